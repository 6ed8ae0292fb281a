"""The verifiers' copy of the auth secrets: it checks every token the auth function signs and
cannot sign one itself (api.auth.verifier_document)."""

from __future__ import annotations

import orjson
import pytest

from api.auth import (
    issue_access_token,
    new_secrets_document,
    parse_secrets,
    verifier_document,
    verify_access_token,
)
from shared.config import ApiConfig, ConfigError


def test_the_verifiers_copy_verifies_and_cannot_sign() -> None:
    doc = new_secrets_document()
    public = verifier_document(doc)
    assert "PRIVATE KEY" not in orjson.dumps(public).decode().split('"api_keys"')[0]
    full, verifier = parse_secrets(orjson.dumps(doc)), parse_secrets(orjson.dumps(public))
    assert verifier.signing_key is None
    assert verifier.api_key_masters == full.api_key_masters  # API-key HMACs still check
    cfg = ApiConfig.load({"AUTH_KEYS_JSON": orjson.dumps(doc).decode()})
    token = issue_access_token(full, cfg, "u1", "user", session_id="s1")
    assert verify_access_token(token, verifier, cfg).user_id == "u1"
    with pytest.raises(ConfigError, match="cannot sign"):
        issue_access_token(verifier, cfg, "u1", "admin", session_id="s1")
