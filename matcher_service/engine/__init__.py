"""The pure matching engine: commands in, events out. See docs/engine.md."""

from matcher_service.engine.engine import Engine, OrderView

__all__ = ["Engine", "OrderView"]
