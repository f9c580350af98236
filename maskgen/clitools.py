"""How the command lines (``maskgen``, ``unmask``) end, in one place.

Exit status

- 0: done.
- 2: a usage error: the command line does not parse, or one option's value is bad on its own. Click
  says so, naming the option: an option's callback raises ``click.BadParameter`` with the library's own
  check of that one value (``maskgen.builder.option_problem``, ``maskgen.preview.option_problem``,
  ``unmask.config.value_problem``), so a range is written once, in the library.
- 1: everything else, in one line: bad inputs and files (a dataset, a template pack, a ``--config``
  file, a checkpoint), values each fine alone but not together (``--config`` with ``--preset``,
  ``--backend dask`` without ``--scheduler``), problems the library finds with the inputs (more
  ``--pairs`` than the sources allow) and failures while running.
- 130: interrupted.

No traceback unless the group's ``--debug`` is given: an unexpected
exception becomes ``Error: Type: message (run with --debug for the traceback)``, an operating
system error names its path and cause (``Error: /data/x.tar: No space left on device``).
"""

from __future__ import annotations

import errno
import os
import traceback
from typing import Any

import click

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
DEBUG_HINT = "run with --debug for the traceback"
_DEBUG = "clitools.debug"  # key in click's Context.meta (shared by a group's and its commands' contexts)


def printable(text: str) -> str:
    """``text`` safe to print: names from the OS may hold undecodable bytes (surrogate escapes)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def describe(error: BaseException) -> str:
    """One line for an exception the commands did not expect."""
    if isinstance(error, OSError) and error.strerror:
        paths = [os.fsdecode(p) for p in (error.filename, error.filename2) if p is not None]
        if paths:
            return printable(f"{' -> '.join(paths)}: {error.strerror}")
        return f"{error.strerror} ({errno.errorcode.get(error.errno, 'OSError')}; {DEBUG_HINT})"
    text = " ".join(str(error).split())  # one line whatever the message holds
    return printable(f"{type(error).__name__}: {text} ({DEBUG_HINT})" if text
                     else f"{type(error).__name__} ({DEBUG_HINT})")


def _remember_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta[_DEBUG] = value
    return value


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
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own: shown by click (exit 1 for errors, 2 for usage)
        except KeyboardInterrupt:
            if debug:
                traceback.print_exc()
            click.echo("interrupted", err=True)  # not click's bare "Aborted!"
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except Exception as error:
            if debug or isinstance(error, OSError) and error.errno == errno.EPIPE:
                raise  # the traceback; a closed pipe (``| head``) click ends quietly
            raise click.ClickException(describe(error)) from None
