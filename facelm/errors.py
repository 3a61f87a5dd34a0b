"""The one exception type for mistakes a user can make and fix (bad path, bad file, wrong scheme)."""


class UserError(Exception):
    """Raised with a one-line message that says what is wrong and what to do; the CLI prints it without a traceback."""
