"""The ``myocds`` command line. Each subcommand registers itself in ``COMMANDS``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence

# name -> (help, add_arguments(parser), run(args) -> exit code)
Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {}


def command(name: str, help_text: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = (help_text, add_arguments, run)
        return run

    return register


def _load_commands() -> None:
    # Subcommand modules register on import; each lives next to the code it drives.
    import importlib

    for module in ("cds_service.commands",):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def main(argv: Sequence[str] | None = None) -> int:
    _load_commands()
    parser = argparse.ArgumentParser(prog="myocds", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in sorted(COMMANDS.items()):
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    try:
        status = COMMANDS[args.command][2](args)
        sys.stdout.flush()  # inside the try: a reader that left (``| head``) is seen here
    except BrokenPipeError:
        # The reader closed the pipe: stop quietly, as a program killed by SIGPIPE would, and
        # point stdout at /dev/null so the interpreter's last flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return status


if __name__ == "__main__":
    # Run as ``python -m cds_service.cli``: use the imported module's registry, the one the
    # subcommand modules register into, not this ``__main__`` copy.
    from cds_service.cli import main as _main

    sys.exit(_main())
