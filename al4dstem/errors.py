"""The one exception type for mistakes a user can make (bad file, bad label, bad option).

The CLI turns it into a single line on stderr and a non-zero exit; anything else is a bug
and keeps its traceback.
"""


class Al4dstemError(Exception):
    """A user-facing error: its message is the whole story, one line, no traceback needed."""
