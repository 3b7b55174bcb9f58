"""What every `python -m sisr.*` command shares: its log format, error lines, exit codes.

Exit status:
- 0: done.
- 2: usage error; the command was refused before doing any work and wrote nothing: a bad
  argument or configuration (argparse's own errors too), an input named on the command
  line that is missing or cannot be used, an output that may not be overwritten.
- 1: the work started and failed, or failed for some inputs (the others are done, and the
  failed ones are named).

Errors are one line, `error: <what and why>`, on standard error, cut to about
`ERROR_WIDTH` characters unless `--verbose`; progress goes to the log (standard error) and
results to standard output. `--help` and argument errors do not load TensorFlow: a command loads it
(`sisr._backend.start`) after parsing, with its start-up lines filtered (`sisr.cli_logs`).
"""

import argparse
import contextlib
import json
import logging
import sys

from sisr import cli_logs
from sisr.errors import SisrError, UsageError

EXIT_FAILED = 1
EXIT_USAGE = 2
# The longest error line printed without --verbose (a message may quote a whole file).
ERROR_WIDTH = 600
VERBOSE_HELP = ("TensorFlow's start-up log lines and whole error messages (also "
                f"{cli_logs.SHOW_ENV}=1 for the log lines)")


class _Formatter(logging.Formatter):
    """Progress messages as they are; warnings and errors prefixed with their level (and
    `shorten`ed unless verbose)."""

    def __init__(self, fmt=None, verbose=False):
        super().__init__(fmt)
        self.verbose = verbose

    def format(self, record):
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message if self.verbose else shorten(message)}"
        return message


def setup_logging(level=logging.INFO, verbose=False):
    """Logs to standard error in the common format, unless logging is set up already
    (`logging.basicConfig` semantics: an application's own set-up wins)."""
    handler = logging.StreamHandler()
    handler.setFormatter(_Formatter("%(message)s", verbose=verbose))
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


def shorten(message, width=ERROR_WIDTH):
    """`message` with each line longer than `width` characters cut in the middle: its start
    (what failed) and its end (often what to do) are kept, with a note of what is left out."""
    def cut(line):
        if len(line) <= width:
            return line
        head, tail = width * 2 // 3, width // 3
        return (f"{line[:head]} ... ({len(line) - head - tail} characters left out; "
                f"--verbose shows them) ... {line[-tail:]}")

    return "\n".join(cut(line) for line in str(message).split("\n"))


def error(message, verbose=False):
    """Prints the one-line error of a command (`shorten`ed unless `verbose`)."""
    print(f"error: {message if verbose else shorten(message)}", file=sys.stderr)


def is_verbose(args):
    """True if the command line asked for `--verbose` (train's `--verbose 2` too)."""
    value = getattr(args, "verbose", False)
    return value if isinstance(value, bool) else value >= 2


def add_verbose(parser, default=False):
    """Adds the `--verbose` flag (`VERBOSE_HELP`); `default=argparse.SUPPRESS` on a
    subcommand's parser keeps the main parser's value."""
    parser.add_argument("--verbose", action="store_true", default=default, help=VERBOSE_HELP)


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


def parser(command, subcommand=None, verbose=True, **kwargs):
    """The argument parser of `python -m COMMAND` (kwargs as for `argparse`), with
    `--verbose` unless `verbose=False` (the command adds its own). With `subcommand` (the
    attribute that names it), returns (parser, its subparsers)."""
    kwargs.setdefault("formatter_class", HelpFormatter)
    result = argparse.ArgumentParser(prog=f"python -m {command}", **kwargs)
    if verbose:
        add_verbose(result)
    if subcommand is None:
        return result
    return result, result.add_subparsers(dest=subcommand, required=True)


def start(verbose=False):
    """Loads TensorFlow for a command (`sisr._backend.start`): its C++ log level set first,
    its start-up notices filtered, unless `verbose` or `SISR_TF_LOGS=1`. A missing backend
    is a usage error."""
    from sisr import _backend

    wanted = cli_logs.tensorflow_logs_wanted(verbose)
    cli_logs.quiet_tensorflow(verbose)
    try:
        with cli_logs.filtered_stderr(enabled=not wanted and "tensorflow" not in sys.modules):
            _backend.start()
    except ImportError as err:
        raise UsageError(str(err)) from err
    if not wanted:  # TensorFlow's Python INFO lines ("Assets written to: /tmp/...")
        logging.getLogger("tensorflow").setLevel(logging.WARNING)


def main(argument_parser, body, argv=None, check=None, log_level=logging.INFO):
    """A command's `main(argv)`: parses `argv`, loads TensorFlow (`start`), then
    `check(argument_parser, args)` may reject values with `argument_parser.error` (exit 2);
    sets up logging and `run`s `body(args)`; returns the exit status."""
    args = argument_parser.parse_args(argv)
    verbose = is_verbose(args)
    try:
        start(verbose)
    except UsageError as err:
        error(err, verbose)
        return err.exit_status
    if check is not None:
        check(argument_parser, args)
    setup_logging(log_level, verbose)
    return run(body, args, verbose)


def run(body, args, verbose=False):
    """Runs a command's `body(args)` and turns sisr's and the OS's errors into one line and
    an exit status; returns `body`'s status (None counts as 0)."""
    try:
        status = body(args)
    except SisrError as err:
        error(err, verbose)
        return err.exit_status
    except FileExistsError as err:  # a refusal to overwrite: the command must change
        error(err, verbose)
        return EXIT_USAGE
    except OSError as err:
        error(err, verbose)
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
