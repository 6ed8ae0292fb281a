"""Keys: the HD wallet of the deposit addresses and the single-key hot and gas wallets.

Deposit address ``i`` is BIP-44 ``m/44'/60'/0'/0/i`` of the mnemonic. The seed is derived
once per instance (PBKDF2 is slow by design); a key is derived when an address is allocated
or swept. Keys never leave this module's objects as text, and no repr shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_account.hdaccount.mnemonic import Mnemonic
from eth_account.signers.local import LocalAccount
from eth_account.types import Language

from shared.config import ConfigError, SecretSource

DEPOSIT_PATH = "m/44'/60'/0'/0/{index}"
MAX_INDEX = 2**31 - 1  # non-hardened child indexes


@dataclass(frozen=True, slots=True)
class HdWallet:
    _seed: bytes = field(repr=False)

    @staticmethod
    def from_mnemonic(words: str, passphrase: str = "") -> HdWallet:
        if not Mnemonic(Language.ENGLISH).is_mnemonic_valid(words):
            # The words are not echoed: they are the secret.
            raise ConfigError("the wallet mnemonic is not a valid BIP-39 English mnemonic")
        return HdWallet(seed_from_mnemonic(words, passphrase))

    @staticmethod
    def from_source(source: SecretSource) -> HdWallet:
        return HdWallet.from_mnemonic(source.read())

    def account(self, index: int) -> LocalAccount:
        if not 0 <= index <= MAX_INDEX:
            raise ValueError(f"deposit address index out of range: {index}")
        key: LocalAccount = Account.from_key(
            key_from_seed(self._seed, DEPOSIT_PATH.format(index=index))
        )
        return key

    def address(self, index: int) -> str:
        """The checksummed address of deposit index ``index``."""
        return str(self.account(index).address)


def new_mnemonic() -> str:
    """A fresh 24-word mnemonic (for a local development wallet)."""
    return str(Mnemonic(Language.ENGLISH).generate(24))


def single_key(source: SecretSource) -> LocalAccount:
    """The account of a hot or gas wallet key (hex, with or without 0x)."""
    text = source.read()
    try:
        account: LocalAccount = Account.from_key(text)
    except Exception:
        raise ConfigError(f"{source.name} is not a valid private key") from None
    return account
