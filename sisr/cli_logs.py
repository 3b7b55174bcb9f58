"""TensorFlow's C++ start-up lines, kept off the commands' standard error.

`quiet_tensorflow` sets `TF_CPP_MIN_LOG_LEVEL=2` (TensorFlow's own INFO and WARNING lines
off; its errors stay) unless the user set it. Some lines ignore that setting: oneDNN's notice
is written while TensorFlow loads, before absl's logging is initialised (with absl's
"WARNING: All log messages before absl::InitializeLog() ..." in front), and absl reads no
environment variable. `filtered_stderr` drops exactly those lines while TensorFlow is
imported and passes every other line on as it comes. `SISR_TF_LOGS=1` (or a command's
`--verbose`) keeps everything. `TF_ENABLE_ONEDNN_OPTS` is never changed: it changes the
numerics and the speed.
"""

import contextlib
import os
import re
import sys

# The environment variable that keeps TensorFlow's start-up lines.
SHOW_ENV = "SISR_TF_LOGS"
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}
# Whole lines that are notices, written while TensorFlow loads (one per native library).
NOTICES = (
    re.compile(rb"WARNING: All log messages before absl::InitializeLog\(\) is called are "
               rb"written to STDERR\n"),
    re.compile(rb"I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\. "
               rb"[^\n]*\n"),
)


def tensorflow_logs_wanted(verbose=False):
    """True if TensorFlow's start-up lines are to be shown (`--verbose`, `SISR_TF_LOGS=1`)."""
    return bool(verbose) or os.environ.get(SHOW_ENV, "") not in ("", "0")


def quiet_tensorflow(verbose=False):
    """Sets TensorFlow's C++ log level (`QUIET_ENV`) where the user has not, before it loads;
    nothing if the logs are wanted."""
    if tensorflow_logs_wanted(verbose):
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def drop_notices(data):
    """`data` (bytes of whole lines) without the lines of `NOTICES`."""
    for pattern in NOTICES:
        data = pattern.sub(b"", data)
    return data


def _forward(read_fd, write_fd):
    """Copies `read_fd` to `write_fd` line by line without `NOTICES`, until end of file."""
    pending = b""
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        pending += chunk
        lines, _, pending = pending.rpartition(b"\n")
        if lines:
            os.write(write_fd, drop_notices(lines + b"\n"))
    if pending:
        os.write(write_fd, pending)


@contextlib.contextmanager
def filtered_stderr(enabled=True):
    """Inside the block, standard error (fd 2, so native libraries' lines too) goes through
    a child process that drops `NOTICES` and passes every other line on at once: if the
    process dies in the block, what it wrote is still shown. No-op where there is no fork."""
    if not enabled or not hasattr(os, "fork"):
        yield
        return
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    saved = os.dup(2)
    pid = os.fork()
    if pid == 0:  # the child: forward, then leave without running the parent's clean-up
        status = 0
        try:
            os.close(write_fd)
            _forward(read_fd, saved)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(read_fd)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer is closed: the child sees its end
        os.close(saved)
        os.waitpid(pid, 0)
