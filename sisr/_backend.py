"""Checks that the TensorFlow backend and a safe Keras version are installed, and what
memory this machine has."""

import os

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
