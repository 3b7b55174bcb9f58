"""Atomic file writes: a crash at any moment leaves the previous file intact."""

import json
import os
import shutil
import tempfile


def _temp_beside(path, suffix=""):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    # mkstemp makes the file private (0600); give it the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp


def atomic_save(path, write, suffix=""):
    """Calls `write(tmp)` on a temporary file beside `path`, then renames it to `path`.

    `suffix` is the temporary file's ending, for writers that check it (e.g. ".keras").
    """
    tmp = _temp_beside(path, suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data):
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    atomic_save(path, write)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, value):
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def atomic_copy(source, destination):
    atomic_save(destination, lambda tmp: shutil.copyfile(source, tmp))
