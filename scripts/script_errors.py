"""The scripts' entry point: a problem the user can fix is one line on stderr and exit code 1 (130
for Ctrl-C), as for the ``codec`` commands, not a traceback.

    if __name__ == "__main__":
        run_main(main)
"""

import sys
from collections.abc import Callable

from codec.errors import CodecError


def run_main(main: Callable[[], int | None]) -> None:
    """Run ``main`` and exit with its return code; CodecError, OSError and Ctrl-C as one line."""
    try:
        code = main()
    except CodecError as error:
        sys.exit(f"error: {error}")
    except OSError as error:   # a missing or unwritable file, a full disk
        where = f"{error.filename}: " if error.filename else ""
        sys.exit(f"error: {where}{error.strerror or error}")
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
