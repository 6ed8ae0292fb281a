"""The development command-keys document: every local producer's key and the matcher's view of
them in one owner-only file (shared.producers); in the cloud each producer has its own."""

from __future__ import annotations

import json
import os
from pathlib import Path

from shared.producers import new_keys_document


def write_command_keys(path: Path) -> Path:
    """Make a development command-keys document at ``path`` (owner-only) unless one is
    there: a key for every producer (shared.producers)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made by a concurrent start
            return path
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(new_keys_document(), indent=2).encode())
    return path
