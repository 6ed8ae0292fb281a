"""The wallet's pure rules: exact amount conversion with the dust kept, replacement fees, the
HD derivation path, and the secrets' configuration."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.config import ConfigError, SecretSource, WalletConfig
from wallet.assets import AssetChain
from wallet.chain import Fees, topic_address, transfer_data
from wallet.keys import HdWallet, new_mnemonic

DEV_MNEMONIC = "test test test test test test test test test test test junk"


def _asset(precision: int, decimals: int, **rules: str) -> AssetChain:
    chain = {"kind": "native", "decimals": decimals, **rules}
    return AssetChain.parse("ETH", precision, chain, 12)


@given(
    st.integers(0, 18).flatmap(lambda p: st.tuples(st.just(p), st.integers(p, 30))),
    st.integers(1, 10**40),
)
def test_token_amounts_convert_exactly_and_keep_the_dust(
    precision_decimals: tuple[int, int], token_amount: int
) -> None:
    precision, decimals = precision_decimals
    asset = _asset(precision, decimals)
    amount, dust = asset.from_token(token_amount)
    assert asset.to_token(amount) + dust == token_amount  # nothing lost, nothing made
    assert 0 <= dust < asset.unit
    assert asset.from_token(asset.to_token(amount)) == (amount, 0)


def test_rules_parse_in_the_assets_precision_and_refuse_finer_ones() -> None:
    asset = _asset(8, 18, min_deposit="0.001", withdrawal_fee="0.0005", confirmations=3)  # type: ignore[arg-type]
    assert (asset.min_deposit, asset.withdrawal_fee, asset.confirmations) == (100_000, 50_000, 3)
    assert asset.withdrawal_daily_limit is None and asset.min_withdrawal == 1
    with pytest.raises(ValueError):
        _asset(2, 18, min_deposit="0.001")


@given(st.integers(1, 10**12), st.integers(1, 10**12), st.integers(10, 100), st.integers(1, 10**13))
def test_a_replacement_raises_both_fees_enough_or_is_refused(
    max_fee: int, prio: int, percent: int, cap: int
) -> None:
    old = Fees(max(max_fee, prio), prio)
    market = Fees(max_fee // 2 + 1, 1)
    new = old.bumped(percent, market, cap)
    if new is None:
        assert -(-old.max_fee * (100 + percent) // 100) > cap or market.max_fee > cap
        return
    assert new.max_fee <= cap and new.priority_fee <= new.max_fee
    # Nodes replace only when both fees rise by at least 10 %.
    assert new.max_fee * 100 >= old.max_fee * (100 + percent)
    assert new.priority_fee * 100 >= old.priority_fee * (100 + percent)
    assert new.max_fee >= market.max_fee


def test_deposit_addresses_follow_bip44() -> None:
    hd = HdWallet.from_mnemonic(DEV_MNEMONIC)
    # anvil's (and hardhat's) dev accounts are this path of this mnemonic.
    assert hd.address(0) == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert hd.address(1) == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    assert len({HdWallet.from_mnemonic(new_mnemonic()).address(0) for _ in range(3)}) == 3


def test_a_bad_mnemonic_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as err:
        HdWallet.from_mnemonic("correct horse battery staple")
    assert "horse" not in str(err.value)


def test_erc20_encoding() -> None:
    to = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    data = transfer_data(to, 5)
    assert data[:4].hex() == "a9059cbb" and len(data) == 68
    assert topic_address(data[4:36]) == to.lower()
    assert int.from_bytes(data[36:]) == 5


def test_secret_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in ("WALLET_MNEMONIC", "WALLET_MNEMONIC_FILE", "WALLET_MNEMONIC_SECRET"):
        monkeypatch.delenv(name, raising=False)
    source = SecretSource.load("WALLET_MNEMONIC")
    assert not source.configured
    with pytest.raises(ConfigError, match="WALLET_MNEMONIC_FILE"):
        source.read()
    monkeypatch.setenv("WALLET_MNEMONIC", DEV_MNEMONIC)
    monkeypatch.setenv("WALLET_MNEMONIC_FILE", "/nonexistent")
    with pytest.raises(ConfigError, match="at most one"):
        SecretSource.load("WALLET_MNEMONIC")
    monkeypatch.delenv("WALLET_MNEMONIC")
    with pytest.raises(ConfigError, match="cannot be read"):
        SecretSource.load("WALLET_MNEMONIC").read()
    assert DEV_MNEMONIC not in repr(SecretSource("X", value=DEV_MNEMONIC))


def test_wallet_config_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_FEE_GWEI", "lots")
    with pytest.raises(ConfigError, match="MAX_FEE_GWEI"):
        WalletConfig.load()
    monkeypatch.setenv("MAX_FEE_GWEI", "50")
    monkeypatch.setenv("WITHDRAWAL_FEE_BUMP_PERCENT", "5")
    with pytest.raises(ConfigError, match="10"):
        WalletConfig.load()
    monkeypatch.setenv("WITHDRAWAL_FEE_BUMP_PERCENT", "20")
    monkeypatch.setenv("HOT_WALLET_ADDRESS", "0x1234")
    with pytest.raises(ConfigError, match="HOT_WALLET_ADDRESS"):
        WalletConfig.load()
    monkeypatch.delenv("HOT_WALLET_ADDRESS")
    assert WalletConfig.load().max_fee_wei == 50 * 10**9
