"""Who may send which command: each producer signs its commands with its own key, and the
matcher applies a command only when a producer allowed to send its type signed it
(docs/decisions/0020).

Without this the matcher would apply any command from anyone able to publish on the topic: a
compromised orders function could publish a ``Deposit`` or a ``SettleWithdrawal``. With it, a
stolen producer can send only what that producer sends anyway.

- ``ALLOWED``: producer -> the command types it may send. A new command type is added to the
  set of the producer that sends it (a unit test fails while a type has no producer).
- Each message carries the attributes ``producer`` and ``signature``: Ed25519 over
  ``producer \\n ordering key \\n data`` (base64url), so a signed command cannot be moved to
  another producer's name or another user's ordering key.
- The keys: one JSON document ``{producer: PEM}`` from ``COMMAND_KEYS`` / ``_FILE`` /
  ``_SECRET`` (shared.config.CommandKeysConfig). In the cloud each producer's document holds
  its own private key only (its Secret Manager secret, readable by it alone) and the
  matcher's holds every producer's public key. Locally ``make run`` makes one document with
  every private key (``STATE/command-keys.json``) that all local processes read; a publisher
  signs with the first key it holds whose producer may send the command.
- The matcher refuses (dead-letters, logs a security event, applies nothing) a command that
  is unsigned, signed by an unknown producer, wrongly signed, or of a type its producer may
  not send.
"""

from __future__ import annotations

import base64
import binascii
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.config import CommandKeysConfig, ConfigError
from shared.messages import (
    AmendOrder,
    AnyCommand,
    CancelAll,
    CancelOrder,
    CreateAsset,
    CreateMarket,
    Deposit,
    ExpireOrders,
    PlaceOco,
    PlaceOrder,
    RefundWithdrawal,
    RequestWithdrawal,
    SettleWithdrawal,
    UpdateMarket,
    decode_command,
)

PRODUCER_ATTR: Final = "producer"
SIGNATURE_ATTR: Final = "signature"

ALLOWED: Final[dict[str, frozenset[type]]] = {
    "orders": frozenset({PlaceOrder, CancelOrder, CancelAll, PlaceOco, AmendOrder}),
    # The Binance dialect places and cancels the same orders under Binance's paths.
    "binance": frozenset({PlaceOrder, CancelOrder, CancelAll}),
    "wallet": frozenset({RequestWithdrawal}),
    "watcher": frozenset({Deposit}),
    "sender": frozenset({SettleWithdrawal, RefundWithdrawal}),
    # Listings, manual credits, and the refund of a withdrawal rejected in review.
    "admin": frozenset({CreateAsset, CreateMarket, UpdateMarket, Deposit, RefundWithdrawal}),
}
"""Producer -> the command types it may send. Extend the set of the producer that sends a
new command type."""
MATCHER_MADE: Final[frozenset[type]] = frozenset({ExpireOrders})
"""Commands the matcher makes itself and applies without publishing them (the expiry of
good-till-date orders): no producer may send one."""


REFUSALS: Final[dict[str, str]] = {
    "unsigned": "not signed by a producer",
    "unknown_producer": "signed in the name of a producer the matcher does not know",
    "bad_signature": "its signature does not match its data, producer and ordering key",
    "forbidden_command": "its producer may not send this type of command",
}
"""The reasons of ``RefusedCommandError``, in words."""


class RefusedCommandError(Exception):
    """Why the matcher refuses a command: ``reason`` is a stable code."""

    def __init__(self, reason: str, producer: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.producer = producer


def _message(producer: str, ordering_key: str, data: bytes) -> bytes:
    return producer.encode() + b"\n" + ordering_key.encode() + b"\n" + data


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_keys(text: str) -> tuple[dict[str, Ed25519PrivateKey], dict[str, Ed25519PublicKey]]:
    """The keys document (``{producer: PEM}``): (private keys, public keys) by producer; a
    private key also gives its public half. ``ConfigError`` names what is wrong, never a key."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ConfigError("the command keys document is not JSON") from None
    if not isinstance(doc, dict) or not doc:
        raise ConfigError("the command keys document must map producers to PEM keys")
    private: dict[str, Ed25519PrivateKey] = {}
    public: dict[str, Ed25519PublicKey] = {}
    for producer, pem in doc.items():
        if producer not in ALLOWED:
            raise ConfigError(f"command keys: unknown producer {producer!r}")
        if not isinstance(pem, str):
            raise ConfigError(f"command keys: {producer!r} must be a PEM string")
        try:
            if "PRIVATE KEY" in pem:
                key = serialization.load_pem_private_key(pem.encode(), password=None)
                if not isinstance(key, Ed25519PrivateKey):
                    raise ValueError("not Ed25519")
                private[producer], public[producer] = key, key.public_key()
            else:
                pub = serialization.load_pem_public_key(pem.encode())
                if not isinstance(pub, Ed25519PublicKey):
                    raise ValueError("not Ed25519")
                public[producer] = pub
        except ValueError:
            raise ConfigError(f"command keys: {producer!r} is not an Ed25519 PEM key") from None
    return private, public


def new_keys_document(producers: tuple[str, ...] = tuple(ALLOWED)) -> dict[str, str]:
    """A fresh document with a private key for each of ``producers``."""
    return {
        p: Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
        for p in producers
    }


def public_document(doc: Mapping[str, str]) -> dict[str, str]:
    """The matcher's document: the public halves of ``doc``'s keys."""
    _, public = parse_keys(orjson.dumps(dict(doc)).decode())
    return {
        p: k.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        for p, k in public.items()
    }


def signature_attributes(
    producer: str, key: Ed25519PrivateKey, data: bytes, ordering_key: str
) -> dict[str, str]:
    """The message attributes of ``data`` signed as ``producer`` with ``key``."""
    signature = key.sign(_message(producer, ordering_key, data))
    return {PRODUCER_ATTR: producer, SIGNATURE_ATTR: _b64(signature)}


@dataclass(frozen=True, slots=True)
class Signer:
    """Signs commands with the keys this deployable holds."""

    keys: Mapping[str, Ed25519PrivateKey] = field(repr=False)

    @staticmethod
    def load(cfg: CommandKeysConfig | None = None) -> Signer:
        """From ``COMMAND_KEYS`` / ``_FILE`` / ``_SECRET``; ``ConfigError`` when none is set."""
        cfg = cfg if cfg is not None else CommandKeysConfig.load()
        private, _ = parse_keys(cfg.keys.read())
        if not private:
            raise ConfigError("the command keys document holds no private key to sign with")
        return Signer(private)

    def producer_for(self, cmd_type: type) -> str:
        for producer, key_types in ALLOWED.items():
            if producer in self.keys and cmd_type in key_types:
                return producer
        held = ", ".join(sorted(self.keys))
        raise PermissionError(f"no producer key held here ({held}) may send {cmd_type.__name__}")

    def attributes(self, cmd_type: type, data: bytes, ordering_key: str) -> dict[str, str]:
        """The message attributes that sign ``data`` (a command of ``cmd_type``)."""
        producer = self.producer_for(cmd_type)
        return signature_attributes(producer, self.keys[producer], data, ordering_key)

    def attributes_of(self, data: bytes, ordering_key: str) -> dict[str, str]:
        """The same for a command already encoded (the local outbox's copy)."""
        return self.attributes(type(decode_command(data)), data, ordering_key)


@dataclass(frozen=True, slots=True)
class Verifier:
    """The matcher's check of each command's producer and signature."""

    keys: Mapping[str, Ed25519PublicKey] = field(repr=False)
    _verify: dict[str, Callable[[bytes, bytes], bytes]] = field(
        init=False, repr=False, compare=False
    )
    _bad: tuple[type[Exception], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The same Ed25519 check in libsodium (PyNaCl): about half the CPU of OpenSSL's here
        # (45 against 93 us a command, docs/benchmarks.md), and without the GIL (cffi). Only
        # the matcher verifies, so only it needs PyNaCl: not imported where the functions are.
        from nacl.exceptions import BadSignatureError
        from nacl.signing import VerifyKey

        verify = {p: VerifyKey(k.public_bytes_raw()).verify for p, k in self.keys.items()}
        object.__setattr__(self, "_verify", verify)
        object.__setattr__(self, "_bad", (BadSignatureError, ValueError, binascii.Error))

    @staticmethod
    def load(cfg: CommandKeysConfig | None = None) -> Verifier:
        cfg = cfg if cfg is not None else CommandKeysConfig.load()
        _, public = parse_keys(cfg.keys.read())
        return Verifier(public)

    def check(
        self, cmd: AnyCommand, data: bytes, ordering_key: str, attributes: Mapping[str, str]
    ) -> str:
        """The producer that sent ``cmd``; ``RefusedCommandError`` unless it is signed by a known
        producer allowed to send its type."""
        producer = attributes.get(PRODUCER_ATTR)
        signature = attributes.get(SIGNATURE_ATTR)
        if not producer or not signature:
            raise RefusedCommandError("unsigned", producer or None)
        verify = self._verify.get(producer)
        if verify is None:
            raise RefusedCommandError("unknown_producer", producer)
        try:
            verify(_message(producer, ordering_key, data), _unb64(signature))
        except self._bad:
            raise RefusedCommandError("bad_signature", producer) from None
        if type(cmd) not in ALLOWED[producer]:
            raise RefusedCommandError("forbidden_command", producer)
        return producer


# --------------------------------------------------------------------------------------------
# CLI: python -m shared.producers new PRODUCER... | public FILE...
# --------------------------------------------------------------------------------------------


def _main(argv: list[str]) -> int:
    if argv[:1] == ["new"] and len(argv) > 1 and all(p in ALLOWED for p in argv[1:]):
        doc = new_keys_document(tuple(argv[1:]))
    elif argv[:1] == ["public"] and len(argv) > 1:
        doc = {}
        for path in argv[1:]:
            doc.update(public_document(orjson.loads(Path(path).read_bytes())))
    else:
        sys.stderr.write(
            f"usage: python -m shared.producers new PRODUCER... > key.json"
            f" | public key.json... > public.json (producers: {', '.join(ALLOWED)})\n"
        )
        return 2
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
