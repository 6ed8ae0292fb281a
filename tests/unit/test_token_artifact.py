"""The USDT test token's committed artifact: it matches its source, and a rebuild with the
pinned compiler reproduces it (that one installs solc-js into .tools/ on first use)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from infra.processes import REPO_ROOT
from infra.token import load_artifact


@pytest.mark.tools
def test_build_check_reproduces_committed_artifact() -> None:
    # On a fresh machine this first npm-installs the pinned solc-js into .tools/solc.
    proc = subprocess.run(
        [sys.executable, "-m", "infra.token.build", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "reproducible" in proc.stderr


def test_artifact_matches_source() -> None:
    artifact = load_artifact()  # raises if TestToken.sol changed without a rebuild
    assert artifact.compiler.startswith("solc-js 0.8.37+")
    assert artifact.settings["optimizer"] == {"enabled": True, "runs": 200}
    assert {e.get("name") for e in artifact.abi} >= {
        "totalSupply", "balanceOf", "transfer", "transferFrom", "approve", "allowance",
        "mint", "decimals", "Transfer", "Approval",
    }  # fmt: skip
