"""The one exception type for user mistakes, shared by the whole package.

It lives here, in the lowest layer, so that `rlvr.tasks` needs nothing of `rlvr.harness`;
`rlvr.harness.errors` re-exports it. The CLI turns a `UserError` into a single line on stderr
(`rlvr: error: ...`) and exit status 2; every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input (file, field, flag) with a message that names it."""
