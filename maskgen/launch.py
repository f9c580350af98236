"""Console entry points (``maskgen`` here, ``unmask`` in ``unmask.launch``): each imports its command line
with Ctrl-C held.

A command line's own imports (click, OpenCV, NumPy: about half a second) come before its ``Group``
(``maskgen.clitools``) can handle an interrupt, and a KeyboardInterrupt raised inside an import leaves a
traceback or a half-initialised library. Here an interrupt during those imports is held; once they end,
the command stops as any interrupted command does (``interrupted``, exit 130). Only the standard library
is imported before that. Once the command has ended, Ctrl-C is ignored while Python shuts down: its work is
done and its exit status already decided.
"""

from __future__ import annotations

import importlib
import signal
import sys


def launch(module: str) -> None:
    """Import ``module`` (a command line) with Ctrl-C held, then run its ``main``."""
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: held.append(signum))
    try:
        main = importlib.import_module(module).main
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        from .clitools import EXIT_INTERRUPTED, INTERRUPTED

        print(INTERRUPTED, file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    try:
        main()
    finally:
        # the command has ended and said so: a Ctrl-C while Python shuts down (seconds after torch) changes nothing
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def main() -> None:
    launch("maskgen.cli")
