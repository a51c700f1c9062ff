"""The one exception type for user mistakes.

The CLI turns a `UserError` into a single line on stderr (`rlvr: error: ...`) and exit status 2; every
other exception is a bug in the harness and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input (file, field, flag) with a message that names it."""
