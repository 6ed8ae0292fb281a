"""The README's walkthrough: the shell blocks marked ``<!-- walkthrough -->``, in order."""

from __future__ import annotations

import re

from infra.processes import REPO_ROOT

README = REPO_ROOT / "README.md"
BLOCK_RE = re.compile(r"^<!-- walkthrough -->\n```sh\n(.*?)^```$", re.S | re.M)
ORDER_TYPES_RE = re.compile(r"^<!-- ordertypes walkthrough -->\n```sh\n(.*?)^```$", re.S | re.M)


def walkthrough_blocks() -> list[str]:
    return BLOCK_RE.findall(README.read_text())


def order_types_blocks() -> list[str]:
    """The walkthrough of stop orders, OCO lists, amends and good-till-date orders."""
    return ORDER_TYPES_RE.findall(README.read_text())
