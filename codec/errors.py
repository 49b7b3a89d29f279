"""The one exception type that the CLI turns into a one-line error message."""


class CodecError(Exception):
    """A problem the user can fix: bad input file, wrong option value, corrupt ``.codes`` file.

    The message names the file or value and what is supported; the CLI prints it on one line
    and exits non-zero, without a traceback.
    """
