"""Names that moved to another module, still found where they were for one release: each use warns, naming
the new place (the module layout of docs/architecture.md)."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterable
from typing import Any


def forwarder(module: str, moved: dict[str, Iterable[str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``module``: ``moved`` maps each module that has some of its former names
    now to those names."""
    home = {name: new for new, names in moved.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} is deprecated, use {home[name]}.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(home[name]), name)

    return __getattr__
