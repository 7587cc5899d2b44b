"""What every klingcost command shares: exit codes, error reporting, --ledger and --json.

Exit codes (documented in ``klingcost --help`` and the README):

    0  ok
    1  error (the API failed, the ledger is damaged, anything unexpected)
    2  invalid input (a bad request body, price sheet, budget definition or argument)
    3  refused by a budget
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from klingcost import errors
from klingcost.jobs import split_job as split_job  # re-exported for the commands

if TYPE_CHECKING:
    from klingcost.ledger import Ledger

EXIT_OK = 0
EXIT_ERROR = errors.EXIT_ERROR
EXIT_INVALID = errors.EXIT_INVALID
EXIT_REFUSED = errors.EXIT_REFUSED

EXIT_CODES_HELP = "Exit codes: 0 ok, 1 error, 2 invalid input, 3 refused by a budget."

F = TypeVar("F", bound=Callable[..., Any])


def flag(option: str) -> str:
    """The command-line option of a library argument: ``min_samples`` -> ``--min-samples``."""
    return "--" + option.replace("_", "-")


def error_message(exc: errors.KlingcostError) -> str:
    """What a CLI user reads of a library error: its message, led by the option it is about
    (``--by: unknown key 'x' ...``) when it names one in ``exc.option``."""
    return str(exc) if exc.option is None else f"{flag(exc.option)}: {exc}"


def read_input(source: IO[str], param_hint: str = "FILE") -> str:
    """The whole of a FILE|- argument as text: UTF-8 with or without a byte-order mark, or
    UTF-16 (see :mod:`klingcost.cli._input`); anything else is bad input, named."""
    from klingcost.cli._input import read_source

    return read_source(source, param_hint)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print ``Error: message`` to stderr and exit with ``code``; never a traceback."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


class KlingcostGroup(click.Group):
    """A click group that turns klingcost's errors into messages and exit codes.

    Library errors become one ``Error:`` paragraph (:func:`error_message`) and their
    ``exit_code``; anything unexpected
    becomes exit 1 with its type and message (set ``KLINGCOST_DEBUG=1`` for the traceback).
    """

    def invoke(self, ctx: click.Context) -> Any:
        _log_warnings_to_stderr()
        try:
            return super().invoke(ctx)
        except errors.KlingcostError as exc:
            fail(error_message(exc), exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            fail("interrupted", EXIT_ERROR)
        except BrokenPipeError:
            # The reader went away (`klingcost prices | head`): stop quietly, as cat does.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(EXIT_OK)
        except Exception as exc:
            if os.environ.get("KLINGCOST_DEBUG"):
                raise
            fail(f"unexpected {type(exc).__name__}: {exc}", EXIT_ERROR)


def _log_warnings_to_stderr() -> None:
    """Budget alerts and retries are logged; a CLI user sees them as ``warning:`` lines."""
    import logging

    logger = logging.getLogger("klingcost")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)


def open_read_only(path: str | None) -> Ledger:
    """The ledger for a command that only reads (budget list and show, holds, ledger check,
    report, reconcile): opened read-only, so that it works on a read-only file, directory or
    database role, and can write nothing; a missing ledger is LedgerNotFound (exit 2), never
    an empty one."""
    from klingcost.ledger import Ledger

    return Ledger.open(path, read_only=True)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(func)


def _ledger_place(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A ledger file someone names must be in a folder that exists and can be written: a
    typo never makes a tree of folders, nor fails later as an unexpected error (exit 2)."""
    if not value or "://" in value:
        return value
    file = Path(value).expanduser()
    if file.exists():
        return value
    folder = file.parent
    if not folder.is_dir():
        raise click.BadParameter(
            f"no ledger at {file}, and no folder {folder} to make one in: create the folder "
            f"first (mkdir -p {folder}) or give another path",
            param_hint="--ledger / KLINGCOST_LEDGER",
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(
            f"{folder} cannot be written, so no ledger can be made in it: give a path in a "
            "folder you can write",
            param_hint="--ledger / KLINGCOST_LEDGER",
        )
    return value


def ledger_option(func: F) -> F:
    return click.option(
        "--ledger",
        "ledger_path",
        envvar="KLINGCOST_LEDGER",
        callback=_ledger_place,
        metavar="PATH",
        help="The ledger file (env KLINGCOST_LEDGER; default $KLINGCOST_HOME/ledger.db).",
    )(func)


def _overlays(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> str | None:
    # Several --pricing files apply in order; load_sheet takes them as one os.pathsep list
    # (as KLINGCOST_PRICING does, which load_sheet reads itself when none is given).
    return os.pathsep.join(value) if value else None


def pricing_option(func: F) -> F:
    return click.option(
        "--pricing",
        "pricing_path",
        multiple=True,
        callback=_overlays,
        metavar="FILE",
        help="A price sheet or overlay to load over the bundled one; repeat it to stack "
        f"several, applied in order (env KLINGCOST_PRICING, files joined by {os.pathsep!r}).",
    )(func)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False))
