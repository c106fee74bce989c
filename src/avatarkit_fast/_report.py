"""The one "report to on_error, or log" routine.

Errors that happen away from a caller (a frame applied late, a message read
in the background, a request the server failed) have nobody to raise to: they
go to the application's ``on_error`` callback if it gave one, else to the
module's logger as a warning.  A callback that raises is logged and never
breaks the loop that called it.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

__all__ = ["report"]


def report(
    on_error: Optional[Callable[[BaseException], object]],
    error: BaseException,
    logger: logging.Logger,
    what: str = "",
    *,
    level: int = logging.WARNING,
) -> None:
    """Hand ``error`` to ``on_error``, or log it on ``logger`` at ``level`` when
    there is no callback (with the traceback of its ``__cause__``, if any);
    never raises (a raising callback is logged with its traceback).  ``what``
    prefixes the logged line (e.g. ``"avatar session"``).  A caller whose
    callback may re-enter it keeps its own guard around this call."""
    if on_error is None:
        cause = error.__cause__
        if what:
            logger.log(level, "%s: %s", what, error, exc_info=cause)
        else:
            logger.log(level, "%s", error, exc_info=cause)
        return
    try:
        on_error(error)
    except Exception:
        logger.exception("%son_error callback raised", f"{what}: " if what else "")
