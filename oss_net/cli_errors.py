"""The edge of every command: a failure becomes one line on stderr and an exit status, not a traceback.

    def main(argv=None) -> int:
        parser = build_parser()
        add_verbose_flag(parser)
        arguments = parser.parse_args(argv)
        return run_command(lambda: work(arguments), prog=parser.prog, verbose=arguments.verbose)

The line reads like argparse's own usage errors, `<prog>: error: <file>: <problem> (<what to do>)`:
- bad input or environment (the library's `OSSNetError`s, `PAUError`, any `OSError`): exit status 2;
  an `OSError` is put in words (disk full, permission denied, a parent that is a file, ...);
- Ctrl-C: exit status 130 and one line with the exact command that goes on where the run stopped, for a
  command that can (`continue_with`: its arguments plus `--continue`; training raises `Interrupted` with
  `--resume <run folder>` once it has one);
- anything else is a bug: exit status 1, one line naming the exception and the file holding the traceback.
`--verbose` prints the traceback as well. An error raised in a DataLoader worker is reported as the
original error, without the worker's traceback around it.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import traceback
from typing import Callable, Sequence

from oss_net.io import OSSNetError, describe_os_error

EXIT_BAD_INPUT = 2  # the same status argparse uses for a bad command line
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130  # the shell's status for SIGINT

WORKER_MARKER = "Original Traceback (most recent call last):"  # torch.utils.data's ExceptionWrapper


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    """Add `--verbose` (print the traceback of an error) unless the parser has it already."""
    try:
        parser.add_argument("--verbose", action="store_true", help="print the full traceback of an error")
    except argparse.ArgumentError:  # the command defines --verbose itself (e.g. also for debug logging)
        pass


class Interrupted(KeyboardInterrupt):
    """Ctrl-C in a run that knows how to go on: `arguments` continue it (after the program's own name)."""

    def __init__(self, arguments: Sequence[str]) -> None:
        super().__init__(shlex.join(arguments))
        self.arguments = list(arguments)


def run_command(body: Callable[[], int | None], *, prog: str, verbose: bool = False,
                continue_with: Sequence[str] | None = None) -> int:
    """Run `body` (the command's work after argument parsing); return its exit status (None → 0).

    `continue_with`: the arguments that continue an interrupted run (`with_flag(argv, "--continue")`), printed as a
    whole command on Ctrl-C; an `Interrupted` raised by the work brings its own.
    """
    try:
        status = body()
    except KeyboardInterrupt as interrupt:
        arguments = interrupt.arguments if isinstance(interrupt, Interrupted) else continue_with
        hint = "" if arguments is None else f"; to go on where it stopped: {shlex.join(invocation() + list(arguments))}"
        print(f"{prog}: interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # the edge: everything not handled below this point ends here
        return report_error(error, prog=prog, verbose=verbose)
    return 0 if status is None else int(status)


def with_flag(argv: Sequence[str] | None, flag: str | None) -> list[str]:
    """The command's arguments (`argv`, else the process's) with `flag` added unless given already (or None)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    return arguments if flag is None or flag in arguments else [*arguments, flag]


def invocation() -> list[str]:
    """How this process was started, as a person types it again: `python -m <module>`, `python <script>.py`, or
    a console script's name (`oss-net-predict`)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name not in (None, "__main__"):
        return ["python", "-m", spec.name.removesuffix(".__main__")]
    script = sys.argv[0] if sys.argv and sys.argv[0] else "python"
    return ["python", script] if script.endswith(".py") else [os.path.basename(script)]


def report_error(error: BaseException, *, prog: str, verbose: bool = False) -> int:
    """Print the one line for `error` (and its traceback when `verbose`); return the exit status."""
    if verbose:
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    if is_bad_input(error):
        print(f"{prog}: error: {error_message(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    where = "above" if verbose else f"in {save_traceback(error, prog)}"
    print(f"{prog}: internal error (a bug, please report it): {type(error).__name__}: {error_message(error)} "
          f"(traceback {where})", file=sys.stderr)
    return EXIT_INTERNAL


def is_bad_input(error: BaseException) -> bool:
    """True for errors the user can fix: the library's errors, PAU argument errors, OSErrors."""
    if isinstance(error, (OSSNetError, OSError)):
        return True
    pau = sys.modules.get("pade_activation_unit.reference")  # not imported → cannot be a PAUError
    return pau is not None and isinstance(error, pau.PAUError)


def error_message(error: BaseException) -> str:
    """The message of `error` on one line: an OSError in words, a DataLoader worker's wrapping removed."""
    if isinstance(error, OSError) and not isinstance(error, OSSNetError) and error.errno is not None:
        return describe_os_error(error)
    return one_line(unwrap_worker_message(str(error)))


def unwrap_worker_message(message: str) -> str:
    """The original message of an error re-raised by a DataLoader worker; other messages unchanged.

    torch re-raises a worker's exception as the same type whose message is "Caught X in DataLoader
    worker process N." plus the worker's traceback, ending in "module.X: original message".
    """
    if WORKER_MARKER not in message:
        return message
    worker_traceback = message.split(WORKER_MARKER, 1)[1].strip("\n").splitlines()
    raised = next((i for i, line in enumerate(worker_traceback) if line and not line[0].isspace()), None)
    if raised is None:
        return message
    name, separator, original = "\n".join(worker_traceback[raised:]).partition(": ")
    return original if separator and " " not in name else message


def one_line(message: str) -> str:
    """A multi-line message on one line: "N problems:\n a\n b" becomes "N problems: a; b", so every file stays named."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    head, rest = lines[0], "; ".join(lines[1:])
    return f"{head} {rest}" if head.endswith(":") else f"{head}; {rest}"


def save_traceback(error: BaseException, prog: str) -> str:
    """Write the traceback of an internal error to a file in the temporary folder; its path (or a hint)."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    name = f"oss_net-{os.path.basename(prog).replace(' ', '_')}-{os.getpid()}.traceback.txt"
    path = os.path.join(tempfile.gettempdir(), name)
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError:
        return "not saved; rerun with --verbose to see it"
    return path
