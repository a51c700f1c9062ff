"""Progress bars that suit where stderr goes.

On a terminal, `bar` is an ordinary tqdm bar. Elsewhere (a log file, a pipe, a batch job's output) a
redrawn bar would leave carriage returns and escape codes in the log, so the bar writes plain lines
instead, one when it starts, at most one every `LOG_INTERVAL_S` seconds, and one when it ends.
"""

from __future__ import annotations

import re
import sys
from typing import Any

LOG_INTERVAL_S = 30.0
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\r\x08]")


class _PlainLines:
    """A stream for tqdm: each status it draws becomes one plain line (no carriage return, no escape code)."""

    def __init__(self, stream: Any):
        self.stream = stream

    def write(self, text: str) -> int:
        line = _CONTROL.sub("", text).strip()
        if line:
            self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def is_terminal(stream: Any = None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def bar(iterable: Any = None, **kwargs: Any):
    """`tqdm(iterable, **kwargs)` on a terminal; plain periodic lines when stderr is not one."""
    from tqdm import tqdm

    if is_terminal():
        return tqdm(iterable, **kwargs)
    kwargs.pop("dynamic_ncols", None)
    kwargs.update(file=_PlainLines(sys.stderr), ascii=True, ncols=80, mininterval=LOG_INTERVAL_S)
    return tqdm(iterable, **kwargs)
