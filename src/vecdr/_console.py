"""What the ``vecdr`` console script needs before anything heavy is imported.

Importing vecdr (numpy, pyarrow, faiss…) takes a good part of a second. A Ctrl-C or a
SIGTERM in that time would print a Python traceback from the middle of an import. When,
and only when, this process is the console script, both signals end it at once with
one line and the usual status (130, 143) until :func:`vecdr.cli.main.main` installs the
handlers that clean up after real work. A program that imports vecdr is left alone.
"""

from __future__ import annotations

import os
import signal
import sys


def _quit(signum: int, frame: object) -> None:
    os.write(2, b"vecdr: error: interrupted\n")
    os._exit(128 + signum)


def _is_console_script() -> bool:
    main = sys.modules.get("__main__")
    name = os.path.basename(str(getattr(main, "__file__", "") or ""))
    return name in ("vecdr", "vecdr.exe", "vecdr-script.py")


if _is_console_script():
    signal.signal(signal.SIGINT, _quit)
    signal.signal(signal.SIGTERM, _quit)
