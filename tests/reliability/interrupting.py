"""Run a command line with one Ctrl-C (SIGINT, raised in the process) at a chosen moment of its start-up:
``python interrupting.py MARK WHEN MODULE unmask ARGS...``. Used by ``test_interrupts``; deterministic:
the signal is raised from a hook at that moment, not after a guessed delay.

WHEN says where inside the import of MODULE (a module the command imports after it starts):

- ``import``: as the import of MODULE begins;
- ``set_name``: in the first ``cached_property.__set_name__`` once MODULE's import has begun (a class
  being created);
- ``exit``: after the command has ended, while Python shuts down (MODULE is not used).

At exit, MARK gets JSON: whether the moment came, and whether MODULE ended up imported whole.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import json
import signal
import sys

mark, when, module, command, *args = sys.argv[1:]
reached = False


def interrupt() -> None:
    global reached
    reached = True
    signal.raise_signal(signal.SIGINT)  # as Ctrl-C: the whole signal path, handlers included


class InterruptAt:
    """A meta path finder that finds nothing: it only sees the import of ``module`` begin."""

    def find_spec(self, name, path=None, target=None):
        if name == module and when == "import" and not reached:
            interrupt()
        return None


real_set_name = functools.cached_property.__set_name__


def set_name(self, owner, name):
    if when == "set_name" and module in sys.modules and not reached:
        interrupt()
    return real_set_name(self, owner, name)


def record() -> None:
    with open(mark, "w") as f:
        json.dump({"reached": reached, "whole": module in sys.modules}, f)


functools.cached_property.__set_name__ = set_name
if when == "exit":
    atexit.register(lambda: (interrupt(), print("interrupted at exit", file=sys.stderr, flush=True)))
sys.meta_path.insert(0, InterruptAt())
atexit.register(record)
sys.argv = [command, *args]
sys.exit(importlib.import_module(f"{command}.launch").main())  # as the console script runs it
