"""Reading the controller's, the receiver's and the server's counters, whatever their type."""

from __future__ import annotations

from typing import Any

__all__ = ["stat", "stats_dict", "is_playing"]


def stat(stats: Any, name: str, default: Any = 0) -> Any:
    if isinstance(stats, dict):
        return stats.get(name, default)
    return getattr(stats, name, default)


def stats_dict(stats: Any) -> dict:
    if isinstance(stats, dict):
        return dict(stats)
    if hasattr(stats, "_asdict"):
        return dict(stats._asdict())
    if hasattr(stats, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(stats)
    return {k: v for k, v in vars(stats).items() if not k.startswith("_")}


def is_playing(ctrl) -> bool:
    state = getattr(ctrl, "state", None)
    name = getattr(state, "name", str(state))
    return name.upper().endswith("PLAYING")
