"""The Pub/Sub and Firestore emulators: gcloud, which starts a JVM of its own (stopping one
means stopping that java too: infra.services.stack)."""

from __future__ import annotations

import os
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from infra.processes import NO_PROXY
from infra.services.config import Launch, StackConfig

JVM_QUICK_START: Final[str] = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
"""Only the C1 JIT and the serial GC: an emulator starts and warms up in about half the
time, at some cost in peak throughput (``StackConfig.jvm_quick_start``)."""


def http_ok(url: str) -> bool:
    """The emulator answers 200 at its root: ready."""
    try:
        with NO_PROXY.open(url, timeout=1.0) as resp:
            return int(resp.status) == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _launch(name: str, cfg: StackConfig, binaries: Mapping[str, Path], *options: str) -> Launch:
    host, port = cfg.host, cfg.port(name)
    gcloud = str(binaries.get("gcloud") or "gcloud")
    cmd = [gcloud, "beta", "emulators", name, "start", f"--host-port={host}:{port}", *options]
    env = {
        **os.environ,
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
    }
    if cfg.jvm_quick_start:
        given = os.environ.get("JAVA_TOOL_OPTIONS", "")
        env["JAVA_TOOL_OPTIONS"] = f"{given} {JVM_QUICK_START}".strip()
    return Launch(cmd, lambda: http_ok(f"http://{host}:{port}/"), env=env)


def pubsub(cfg: StackConfig, state_dir: Path, binaries: Mapping[str, Path]) -> Launch:
    """The Pub/Sub emulator, keeping its topics and subscriptions in ``state_dir/pubsub``."""
    data_dir = state_dir / "pubsub"
    data_dir.mkdir(parents=True, exist_ok=True)  # gcloud does not create it
    return _launch("pubsub", cfg, binaries, f"--project={cfg.project}", f"--data-dir={data_dir}")


def firestore(cfg: StackConfig, state_dir: Path, binaries: Mapping[str, Path]) -> Launch:
    """The Firestore emulator (native mode)."""
    return _launch("firestore", cfg, binaries)
