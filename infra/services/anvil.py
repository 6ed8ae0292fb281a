"""The anvil Ethereum node (chain id 31337 unless configured), and JSON-RPC calls to it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from infra.processes import NO_PROXY
from infra.services.config import Launch, StackConfig
from infra.services.errors import LocalStackError
from infra.tools import anvil_binary


def eth_rpc(url: str, method: str, params: Sequence[Any] = (), timeout: float = 2.0) -> Any:
    """One JSON-RPC call (no proxies); returns ``result`` or raises LocalStackError."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with NO_PROXY.open(request, timeout=timeout) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise LocalStackError(f"{method}: {reply['error']}")
    return reply["result"]


def ready(url: str, chain_id: int) -> bool:
    """The node answers ``eth_chainId`` with the configured chain."""
    try:
        return int(eth_rpc(url, "eth_chainId", timeout=1.0), 16) == chain_id
    except (OSError, urllib.error.URLError, ValueError, LocalStackError):
        return False


def launch(cfg: StackConfig, state_dir: Path, binaries: Mapping[str, Path]) -> Launch:
    """Mining as configured (``block_time``, ``no_mining``, else automine); the chain kept in
    ``anvil_state`` when set."""
    host, port = cfg.host, cfg.anvil_port
    cmd = [
        str(binaries.get("anvil") or anvil_binary(cfg.tools_dir)),
        "--host", host,
        "--port", str(port),
        "--chain-id", str(cfg.chain_id),
    ]  # fmt: skip
    if cfg.block_time is not None:
        cmd += ["--block-time", f"{cfg.block_time:g}"]
    if cfg.no_mining:
        cmd.append("--no-mining")
    if cfg.anvil_state is not None:
        cmd += ["--state", str(cfg.anvil_state), "--state-interval", "5"]
    url = f"http://{host}:{port}"
    return Launch(cmd, lambda: ready(url, cfg.chain_id))
