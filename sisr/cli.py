"""What every `python -m sisr.*` command shares: its log format, error lines, exit codes.

Exit status:
- 0: done.
- 2: usage error; the command was refused before doing any work and wrote nothing: a bad
  argument or configuration (argparse's own errors too), an input named on the command
  line that is missing or cannot be used, an output that may not be overwritten.
- 1: the work started and failed, or failed for some inputs (the others are done, and the
  failed ones are named).

Errors are one line, `error: <what and why>`, on standard error; progress goes to the log
(standard error) and results to standard output.
"""

import argparse
import contextlib
import json
import logging
import sys

from sisr.errors import SisrError, UsageError

EXIT_FAILED = 1
EXIT_USAGE = 2


class _Formatter(logging.Formatter):
    """Progress messages as they are; warnings and errors prefixed with their level."""

    def format(self, record):
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


def setup_logging(level=logging.INFO):
    """Logs to standard error in the common format, unless logging is set up already
    (`logging.basicConfig` semantics: an application's own set-up wins)."""
    handler = logging.StreamHandler()
    handler.setFormatter(_Formatter("%(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


@contextlib.contextmanager
def checking():
    """The block checks the command's inputs: sisr's and the OS's errors raised in it are
    usage errors (exit status 2)."""
    try:
        yield
    except UsageError:
        raise
    except (SisrError, OSError) as err:
        raise UsageError(str(err)) from err


def error(message):
    """Prints the one-line error of a command."""
    print(f"error: {message}", file=sys.stderr)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, wrapping only at spaces: names such as `sr-resnet` or
    `realesrnet-x4` in a help text stay whole."""

    def _wrap(self, text, width):
        import textwrap

        return textwrap.wrap(self._whitespace_matcher.sub(" ", text).strip(), width,
                             break_on_hyphens=False)

    def _split_lines(self, text, width):
        return self._wrap(text, width)

    def _fill_text(self, text, width, indent):
        return "\n".join(indent + line for line in self._wrap(text, width - len(indent)))


def parser(command, subcommand=None, **kwargs):
    """The argument parser of `python -m COMMAND` (kwargs as for `argparse`). With
    `subcommand` (the attribute that names it), returns (parser, its subparsers)."""
    kwargs.setdefault("formatter_class", HelpFormatter)
    result = argparse.ArgumentParser(prog=f"python -m {command}", **kwargs)
    if subcommand is None:
        return result
    return result, result.add_subparsers(dest=subcommand, required=True)


def main(argument_parser, body, argv=None, check=None, log_level=logging.INFO):
    """A command's `main(argv)`: parses `argv` (`check(argument_parser, args)` may reject
    values with `argument_parser.error`, exit 2), sets up logging and `run`s `body(args)`;
    returns the exit status."""
    args = argument_parser.parse_args(argv)
    if check is not None:
        check(argument_parser, args)
    setup_logging(log_level)
    return run(body, args)


def run(body, args):
    """Runs a command's `body(args)` and turns sisr's and the OS's errors into one line and
    an exit status; returns `body`'s status (None counts as 0)."""
    try:
        status = body(args)
    except SisrError as err:
        error(err)
        return err.exit_status
    except FileExistsError as err:  # a refusal to overwrite: the command must change
        error(err)
        return EXIT_USAGE
    except OSError as err:
        error(err)
        return EXIT_FAILED
    return 0 if status is None else status


def parse_set(items, error=UsageError):
    """`--set key=value` pairs as a dict: values parsed as JSON when they can be, else
    kept as strings; "-" in keys read as "_". A malformed item raises `error`."""
    values = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise error(f"--set expects KEY=VALUE, got {item!r}")
        try:
            values[key.replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.replace("-", "_")] = raw
    return values
