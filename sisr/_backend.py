"""Checks that the TensorFlow backend and a safe Keras version are installed, and what
memory this machine has; registers sisr's serialisable classes (`start`)."""

import os
import re
import sys

MIN_KERAS = (3, 13, 2)
INSTALL_HINT = (
    'install it with the extra that fits your machine: pip install "sisr[cpu]" '
    '(tensorflow-cpu) or pip install "sisr[gpu]" (tensorflow[and-cuda]); '
    'from a checkout: pip install -e ".[cpu]"'
)


def _version_tuple(text):
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def require_tensorflow():
    """Raises ImportError with an install hint if TensorFlow or Keras >= 3.13.2 is missing."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow":
        raise ImportError(
            f"sisr runs on the TensorFlow backend of Keras, but KERAS_BACKEND={backend!r}; "
            "unset it or set KERAS_BACKEND=tensorflow"
        )
    try:
        import tensorflow  # noqa: F401
    except ImportError as err:
        raise ImportError(f"sisr needs TensorFlow 2.21, which is not installed: {INSTALL_HINT}") \
            from err
    import keras

    if _version_tuple(keras.__version__) < MIN_KERAS:
        raise ImportError(
            f"sisr needs keras>=3.13.2 (earlier 3.x releases have safe-mode bypass "
            f"advisories), found {keras.__version__}: pip install -U 'keras>=3.13.2'"
        )


def start():
    """Checks the backend (`require_tensorflow`) and registers the classes that sisr's saved
    models name (layers, initializers, `SRModel`) with Keras; idempotent."""
    require_tensorflow()
    import sisr.initializers  # noqa: F401
    import sisr.layers  # noqa: F401
    import sisr.model.srmodel  # noqa: F401


def _module_of_dash_m(orig_argv):
    """The module that `python [options] -m MODULE` runs, from `sys.orig_argv`, or None."""
    for i, arg in enumerate(orig_argv[1:], start=1):
        if arg == "-m":
            return orig_argv[i + 1] if i + 1 < len(orig_argv) else None
        if arg.startswith("-m"):
            return arg[2:]
    return None


def starting_command(argv=None, orig_argv=None):
    """True if sisr is imported to start one of its commands: `python -m sisr.COMMAND`
    (while Python locates that module, `sys.argv[0]` is "-m", as documented) or a `sisr-*`
    console script. Such a command calls `start` itself after parsing its arguments, so that
    `--help` does not load TensorFlow and the command sets TensorFlow's logging first."""
    argv = sys.argv if argv is None else argv
    if not argv:
        return False
    if argv[0] == "-m":
        module = _module_of_dash_m(getattr(sys, "orig_argv", []) if orig_argv is None
                                   else orig_argv)
        return bool(module) and module.startswith("sisr.")
    script = re.sub(r"(-script\.pyw?|\.exe)$", "", os.path.basename(argv[0]))
    if not script.startswith("sisr-"):
        return False
    from importlib.metadata import entry_points

    return any(ep.value.startswith("sisr.")
               for ep in entry_points(group="console_scripts", name=script))


def machine_memory():
    """This machine's physical memory in bytes, or the cgroup's limit if lower; None if
    unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                limit = int(f.read().strip())
        except (OSError, ValueError):  # absent, or "max"
            continue
        total = limit if total is None else min(total, limit)
    return total
