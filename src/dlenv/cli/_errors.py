"""Turn any failure into one red line, a hint and an exit code; tracebacks only with --debug."""

from __future__ import annotations

import contextlib
import signal
import sys
import traceback
from typing import Any

import click

from dlenv.errors import DlenvError
from dlenv.terminal import Terminal


def interrupt_on_sigterm() -> None:
    """Make SIGTERM (`kill`, a closing terminal's supervisor, CI) behave like Ctrl-C.

    Both raise KeyboardInterrupt in the main thread, so every command's interrupt path runs
    (an `up` rolls back what it created and says what remains) and the exit code is 130,
    instead of the process vanishing mid-call with resources nobody accounts for.
    """

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # ValueError: not the main thread (an embedding application): leave its handlers alone
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, handler)


def run_cli(group: click.Group, argv: list[str] | None, *, debug: bool) -> int:
    terminal = Terminal(debug=debug)
    interrupt_on_sigterm()
    try:
        # with standalone_mode=False click returns ctx.exit(n)'s code instead of raising
        rv = group.main(args=argv, prog_name="dlenv", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            return _interrupted(terminal)
        terminal.error("aborted")
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except DlenvError as exc:
        if debug:
            traceback.print_exc()
        terminal.error(exc.one_line(), exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted(terminal)
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the last line of defence: still one line, never a bare traceback
        translated = _translate_foreign(exc)
        if translated is not None:
            if debug:
                traceback.print_exc()
            terminal.error(translated.one_line(), translated.hint)
            return translated.exit_code
        if debug:
            traceback.print_exc()
        terminal.error(
            f"unexpected {type(exc).__name__}: {exc}",
            "re-run with --debug for the traceback and report it as a dlenv bug",
        )
        return 1


def _interrupted(terminal: Terminal) -> int:
    """Ctrl-C or SIGTERM: one line, exit 130 (what was left is said by the command itself)."""
    terminal.error("interrupted", "re-run the same command: dlenv commands are safe to repeat")
    return 130


def _translate_foreign(exc: Exception) -> DlenvError | None:
    """Map SDK errors that escaped the library (e.g. credentials) to actionable errors."""
    if "botocore" in sys.modules:
        from dlenv.cloud.aws_errors import translate

        return translate(exc)
    return None
