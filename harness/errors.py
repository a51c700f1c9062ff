"""The one exception type for user mistakes (defined in `rlvr.tasks.errors`, the lowest layer).

The CLI turns a `UserError` into a single line on stderr (`rlvr: error: ...`) and exit status 2; every
other exception is a bug in the harness and keeps its traceback.
"""

from rlvr.tasks.errors import UserError

__all__ = ["UserError"]
