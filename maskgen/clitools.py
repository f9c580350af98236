"""How the command lines (``maskgen``, ``unmask``) read options with library defaults and how they end, in one place.

Exit status

- 0: done.
- 2: a usage error: the command line does not parse, or one option's value is bad on its own. Click
  says so, naming the option: an option's callback raises ``click.BadParameter`` with the library's own
  check of that one value (``maskgen.build.option_problem``, ``maskgen.preview.option_problem``,
  ``unmask.config.value_problem``), so a range is written once, in the library.
- 1: everything else, in one line: bad inputs and files (a dataset, a template pack, a ``--config``
  file, a checkpoint), values each fine alone but not together (``--config`` with ``--preset``,
  ``--backend dask`` without ``--scheduler``), problems the library finds with the inputs (more
  ``--pairs`` than the sources allow) and failures while running.
- 130: interrupted (Ctrl-C): ``interrupted``, whatever the command was doing. An interrupt that comes
  while a module is being imported is held until that import ends (``imports_finish_first``): one that
  cuts an import in half leaves native libraries half initialised and surfaces as another error.

No traceback unless the group's ``--debug`` is given: an unexpected
exception becomes ``Error: Type: message (run with --debug for the traceback)``, an operating
system error names its path and cause (``Error: /data/x.tar: No space left on device``).
"""

from __future__ import annotations

import builtins
import copy
import dataclasses
import errno
import os
import signal
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
INTERRUPTED = "interrupted"  # what an interrupted command says (not click's bare "Aborted!")
DEBUG_HINT = "run with --debug for the traceback"
_DEBUG = "clitools.debug"  # key in click's Context.meta (shared by a group's and its commands' contexts)


def printable(text: str) -> str:
    """``text`` safe to print: names from the OS may hold undecodable bytes (surrogate escapes)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def describe(error: BaseException) -> str:
    """One line for an exception the commands did not expect."""
    if isinstance(error, OSError) and error.strerror:
        paths = [os.fsdecode(p) for p in (error.filename, error.filename2) if p is not None]
        if isinstance(error, FileExistsError) and paths and os.path.lexists(paths[0]) and not os.path.isdir(paths[0]):
            return printable(f"{paths[0]}: not a folder (a file is where a folder must be)")  # mkdir's "File exists"
        if paths:
            return printable(f"{' -> '.join(paths)}: {error.strerror}")
        return f"{error.strerror} ({errno.errorcode.get(error.errno, 'OSError')}; {DEBUG_HINT})"
    text = " ".join(str(error).split())  # one line whatever the message holds
    return printable(f"{type(error).__name__}: {text} ({DEBUG_HINT})" if text
                     else f"{type(error).__name__} ({DEBUG_HINT})")


def _remember_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta[_DEBUG] = value
    return value


@contextmanager
def imports_finish_first() -> Iterator[None]:
    """While the block runs, an interrupt (SIGINT, Ctrl-C) that comes during an import is held until the
    outermost import ends, then raised as usual; imports take seconds at most.

    A KeyboardInterrupt raised inside an import does not reliably come out as one, and torch's import
    takes seconds of every ``unmask`` command's start. Seen with a Ctrl-C at random moments of it:
    ``RuntimeError: Error calling __set_name__`` (Python 3.11 wraps an exception raised while a class is
    created), an abort (pybind11: "terminate called after throwing ... KeyboardInterrupt", raised in
    Python code that C++ initialisation called), a process killed by SIGINT after saying ``interrupted``.
    Signal handlers can only be set in the main thread: other threads' imports are left alone (Python
    raises KeyboardInterrupt in the main thread only). ``Group`` holds this for a command's run; the
    command line's own modules (about half a second before it) are held by ``maskgen.launch``.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    real_import = builtins.__import__
    held: list[int] = []
    importing = False

    def hold(signum: int, _frame: Any) -> None:
        held.append(signum)

    def import_whole(*args: Any, **kwargs: Any) -> Any:
        nonlocal importing
        if (importing or threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            return real_import(*args, **kwargs)  # inside an import already, or Ctrl-C is not Python's default
        previous = signal.signal(signal.SIGINT, hold)
        importing = True
        try:
            return real_import(*args, **kwargs)
        finally:
            importing = False
            if signal.getsignal(signal.SIGINT) is hold:  # else the imported module set a handler of its own
                signal.signal(signal.SIGINT, previous)
            if held:
                held.clear()
                raise KeyboardInterrupt  # the module is whole: the interrupt goes on as if just pressed

    builtins.__import__ = import_whole
    try:
        yield
    finally:
        builtins.__import__ = real_import


def caused_by_interrupt(error: BaseException) -> bool:
    """Whether ``error`` was raised because of a KeyboardInterrupt: one in its chain of causes and contexts
    (a library that turns the interrupt into its own error; Python 3.11's ``__set_name__`` does)."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        if isinstance(link, KeyboardInterrupt):
            return True
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return False


class Group(click.Group):
    """A command group with ``--debug`` whose commands end as the module docstring says."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(click.Option(
            ["--debug"], is_flag=True, expose_value=False, is_eager=True, callback=_remember_debug,
            help="On an error, show the full traceback instead of one line."))

    def invoke(self, ctx: click.Context) -> Any:
        debug = ctx.meta.get(_DEBUG, False)
        try:
            with imports_finish_first():  # the command's imports: torch's is seconds long
                return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own: shown by click (exit 1 for errors, 2 for usage)
        except KeyboardInterrupt:
            if debug:
                traceback.print_exc()
        except Exception as error:
            if not caused_by_interrupt(error):
                if debug or isinstance(error, OSError) and error.errno == errno.EPIPE:
                    raise  # the traceback; a closed pipe (``| head``) click ends quietly
                raise click.ClickException(describe(error)) from None
            if debug:
                traceback.print_exc()
        click.echo(INTERRUPTED, err=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


def dataclass_default(cls: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls``: the one statement of an option's default."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field.default_factory() if field.default is dataclasses.MISSING else field.default  # type: ignore[misc]


class DataclassDefault(click.Option):
    """An option whose default is a dataclass field's: its value is None unless given (pass only the
    given ones, and the dataclass's default applies), and ``--help`` shows the field's default.

    ``dataclass`` returns the class; it is called for ``--help`` only, as its module may be slow to
    import (numpy, torch). ``show`` turns the default into what a user would type.
    """

    def __init__(self, param_decls: Any = None, *, dataclass: Callable[[], type],
                 show: Callable[[Any], Any] = lambda value: value, **attrs: Any) -> None:
        super().__init__(param_decls, default=None, **attrs)
        self.dataclass, self.show = dataclass, show

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown = copy.copy(self)
        shown.default, shown.show_default = self.show(dataclass_default(self.dataclass(), self.name)), True
        return click.Option.get_help_record(shown, ctx)


class DeprecatedOption(click.Option):
    """A former name of an option, kept for one release: hidden from --help; given, it prints click's
    deprecation warning naming its ``replacement`` (and ``setting``, the value it sets, when named), and
    its value is the replacement's (``DeprecatedNames``). Give it the replacement's type and check."""

    def __init__(self, param_decls: Sequence[str], *, replacement: str, setting: str = "", **attrs: Any) -> None:
        old = param_decls[0]  # its parameter: deprecated_OLD, apart from the replacement's
        super().__init__([*param_decls, f"deprecated_{old.lstrip('-').replace('-', '_')}"], hidden=True,
                         deprecated=f"Use {replacement}{f' ({setting})' if setting else ''}.", **attrs)
        self.replacement = replacement

    @property
    def human_readable_name(self) -> str:
        return self.opts[0]  # the warning names the option typed (--alpha), not the parameter


def value_name(ctx: click.Context, param: click.Parameter) -> str:
    """The name of the value ``param`` gives the command: a deprecated option's is its replacement's."""
    if isinstance(param, DeprecatedOption):
        return next(p.name for p in ctx.command.params if param.replacement in p.opts)
    return param.name


class DeprecatedNames(click.Command):
    """A command with ``DeprecatedOption`` s: the value of one given goes to the option that replaced it, so
    the command sees the new names only; both given are a usage error."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        for param in self.params:
            if isinstance(param, DeprecatedOption):
                value, name = ctx.params.pop(param.name, None), value_name(ctx, param)
                if value is None:
                    continue
                if ctx.params.get(name) is not None:
                    raise click.UsageError(f"{param.opts[0]} is the former name of {param.replacement}: "
                                           f"give {param.replacement} only", ctx)
                ctx.params[name] = value
        return rest
