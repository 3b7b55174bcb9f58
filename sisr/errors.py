"""The base class of sisr's errors.

Every error that sisr raises for bad input derives from `SisrError`, with a one-line message
that names the file or argument and says what is wrong; the command-line tools print that
line and exit with the error's `exit_status` (see `sisr.cli`). Subclasses may also derive
from the built-in exception that fits (`ValueError`, `FileNotFoundError`, ...).
"""


class SisrError(Exception):
    """Bad input to sisr: a file, argument or configuration that cannot be used."""

    #: Exit status of the command-line tools: 1 = the work failed, 2 = usage error.
    exit_status = 1


class UsageError(SisrError, ValueError):
    """A command-line argument or configuration value that cannot be used."""

    exit_status = 2
