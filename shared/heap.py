"""A long-lived process's start-up heap, out of the garbage collector's full passes.

A full pass of Python's cyclic collector walks every object it tracks: in the gateway or the
matcher ~130,000 after start-up (modules, the app, the clients' generated message types),
30 to 40 ms on a quiet machine, during which every thread of the process waits. A full pass
comes each time the objects that survived the younger passes grow by a quarter of those
already old, so under load some requests in flight now and then wait that long.
``freeze_startup_heap`` moves what exists at the end of start-up into the collector's
permanent generation (``gc.freeze``): never walked again, still freed by reference counting
when no longer used (only a reference cycle among them would stay; start-up builds none
that it later drops).
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("heap")


def freeze_startup_heap(part: str) -> None:
    """Collect what start-up left as garbage, then freeze the rest (see the module)."""
    t0 = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info(
        "start-up heap frozen",
        extra={
            "part": part,
            "frozen_objects": gc.get_freeze_count(),
            "collect_ms": round((time.perf_counter() - t0) * 1000, 1),
        },
    )
