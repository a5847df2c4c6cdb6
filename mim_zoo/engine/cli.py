"""What every tool in ``tools/`` shares: bad input ends in one line that names the problem and the fix.

Each tool builds its parser with :func:`tool_parser` (which adds ``--debug`` and shows defaults in ``--help``) and runs
its work inside :func:`one_line_errors`::

    args = tool_parser(__doc__).parse_args(argv)   # before any heavy import: --help and usage errors are instant
    with one_line_errors(args.debug):
        ...

Inside, an error caused by the input (a config, a file, a path, an option: :data:`INPUT_ERRORS`) exits with status 1
and the line ``error: <message> (--debug shows the traceback)``; Ctrl-C exits with status 130 and one line (a tool
that can say how to continue raises ``KeyboardInterrupt(message)``, as ``tools/train.py`` does). With ``--debug`` the
exception propagates unchanged, full traceback included. Any other exception (a bug, an out-of-memory) propagates
with its traceback either way.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator

from ..core.contracts import ContractError
from ..core.registry import ConfigEntryError
from .env import StackError
from .reliability import RunAborted

#: Exceptions that mean "the input is wrong": the messages of mim_zoo's checks (``ValueError``, ``KeyError`` and
#: ``FileNotFoundError`` subclasses, a config entry a plugin refuses, a plugin that lacks its protocol's members,
#: :class:`~mim_zoo.engine.reliability.RunAborted`), file-system errors (``OSError``: a path that cannot be created
#: or read) and an unusable installed stack.
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, OSError, ConfigEntryError, ContractError,
                                                 RunAborted, StackError)

DEBUG_HINT = "(--debug shows the traceback)"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` keeps the description's layout (the usage lines of a tool's docstring) and shows each option's
    default, where it has one (not for flags, nor for options that are unset by default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        default = action.default
        unset = default is None or default is False or default is argparse.SUPPRESS or default in ({}, [])
        if unset or "%(default)" in help_text or not action.option_strings:
            return help_text
        return f"{help_text} (default: %(default)s)"


def tool_parser(description: str | None) -> argparse.ArgumentParser:
    """An argument parser for a tool: the docstring as description, defaults shown, and ``--debug``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full traceback instead of one line")
    return parser


def is_interrupt(err: BaseException) -> bool:
    """Whether ``err`` is Ctrl-C, or an error raised while handling it: mmengine's ``Config.pretty_text`` (called for
    every checkpoint's metadata) turns any exception, ``KeyboardInterrupt`` included, into a ``SyntaxError``."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line.

    A ``KeyError`` is shown without the quotes ``str()`` adds; an error re-raised by torch's DataLoader from a data
    worker (whose message holds the worker's traceback) is shown as the worker's own last line.
    """
    text = str(err.args[0]) if isinstance(err, KeyError) and len(err.args) == 1 else str(err)
    if "\nOriginal Traceback" in text:  # torch.utils.data._utils.ExceptionWrapper.reraise
        last = text.rstrip().splitlines()[-1]
        prefix = f"{type(err).__module__}.{type(err).__name__}: "
        text = last.removeprefix(prefix).removeprefix(f"{type(err).__name__}: ") + " (in a data worker)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines) or type(err).__name__


@contextlib.contextmanager
def one_line_errors(debug: bool = False) -> Iterator[None]:
    """Turn input errors and Ctrl-C inside the block into one line on stderr and a non-zero exit (see module doc).

    Args:
        debug: let every exception propagate with its traceback.

    Raises:
        SystemExit: status 1 for an input error, 130 for Ctrl-C.
    """
    try:
        yield
    except BaseException as err:
        if debug:
            raise
        if is_interrupt(err):
            message = one_line(err) if isinstance(err, KeyboardInterrupt) and str(err) else "(Ctrl-C)"
            print(f"interrupted: {message}", file=sys.stderr, flush=True)
            raise SystemExit(130) from None
        if isinstance(err, INPUT_ERRORS):
            raise SystemExit(f"error: {one_line(err)} {DEBUG_HINT}") from None
        raise
