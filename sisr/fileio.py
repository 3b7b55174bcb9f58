"""Atomic file writes: a crash at any moment leaves the previous file (or none) intact.

Everything sisr writes goes through `atomic_output`: the writer fills a hidden temporary
file beside the target, named `.tmp-<random><suffix>` (`is_temp_name` recognises them, so
that interrupted writes can be cleaned up and are never read as data), which is renamed
onto the target only once it is complete.
"""

import contextlib
import json
import os
import re
import secrets
import shutil

TEMP_PREFIX = ".tmp-"
# A name that becomes one path component: letters, digits, ".", "_" and "-", starting with
# a letter or digit (so never "", "." or "..", hidden, or a path).
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def is_plain_name(name):
    """True if `name` (from data: a registry, a config) may name a file by itself."""
    return isinstance(name, str) and PLAIN_NAME.fullmatch(name) is not None


def is_relative_path(path):
    """True if `path` ("a/b.pth", from data) is "/"-separated plain names, so that it
    stays inside whatever folder it is joined to."""
    return isinstance(path, str) and all(is_plain_name(part) for part in path.split("/"))


def path_inside(root, *parts):
    """`root` joined with `parts`, refused (ValueError) unless the result lies inside
    `root` by its names (symbolic links a user made inside `root` are followed as usual)."""
    path = os.path.join(root, *parts)
    base = os.path.abspath(root)
    if os.path.commonpath([base, os.path.abspath(path)]) != base or \
            os.path.abspath(path) == base:
        raise ValueError(f"{path} is outside {root}")
    return path


def is_temp_name(path):
    """True for the temporary files and folders that `atomic_output` creates."""
    return os.path.basename(os.fspath(path)).startswith(TEMP_PREFIX)


def new_temp_path(directory, suffix="", create=True):
    """A fresh hidden temporary path in `directory`; with `create`, an empty file there.

    Unlike `tempfile.mkstemp` (mode 0600), the file gets the permissions of any new file
    (0666 minus the umask), which the final file keeps after the rename.
    """
    for _ in range(100):
        path = os.path.join(directory, f"{TEMP_PREFIX}{secrets.token_hex(8)}{suffix}")
        if not create:
            if not os.path.lexists(path):
                return path
            continue
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise FileExistsError(f"cannot create a temporary file in {directory}")


def _exists_error(path):
    return FileExistsError(f"{path} exists; not overwriting it (use --force)")


def _sync(path):
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _publish(tmp, path, overwrite):
    """Moves a finished temporary file or folder to `path`."""
    if not overwrite:
        if os.path.isdir(tmp):
            if os.path.lexists(path):
                raise _exists_error(path)
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # atomic, and fails if `path` appeared meanwhile
        except FileExistsError as err:
            raise _exists_error(path) from err
        except OSError:  # filesystems without hard links
            if os.path.lexists(path):
                raise _exists_error(path) from None
            os.replace(tmp, path)
        return
    if os.path.isdir(tmp) and os.path.lexists(path):
        # A folder cannot be renamed over another: move the old one aside first.
        old = new_temp_path(os.path.dirname(os.path.abspath(path)), create=False)
        os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(old, path)
            raise
        (shutil.rmtree if os.path.isdir(old) else os.remove)(old)
        return
    os.replace(tmp, path)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def atomic_output(path, overwrite=True, suffix=None, directory=False):
    """Yields a temporary path beside `path`; when the block succeeds it becomes `path`,
    otherwise it is removed.

    Args:
        path: the file (or folder) to write.
        overwrite: replace an existing `path`; if false, an existing `path` raises
            `FileExistsError` (before and after writing) and is never replaced.
        suffix: ending of the temporary name, for writers that pick the format from it
            (default: the extension of `path`).
        directory: the writer creates a folder at the temporary path (which does not
            exist yet), e.g. a SavedModel.
    """
    path = os.fspath(path)
    if not overwrite and os.path.lexists(path):
        raise _exists_error(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    if suffix is None:
        suffix = os.path.splitext(path)[1]
    tmp = new_temp_path(parent, suffix, create=not directory)
    try:
        yield tmp
        if os.path.isfile(tmp):
            _sync(tmp)
        _publish(tmp, path, overwrite)
    finally:
        _remove(tmp)


def atomic_write_bytes(path, data, overwrite=True):
    with atomic_output(path, overwrite) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path, text, overwrite=True):
    atomic_write_bytes(path, text.encode("utf-8"), overwrite)


def atomic_write_json(path, value, overwrite=True):
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n", overwrite)


def atomic_copy(source, destination):
    with atomic_output(destination) as tmp:
        shutil.copyfile(source, tmp)


def check_writable_dir(path):
    """Creates `path` if needed and checks a file can be written there; raises `OSError`
    with a message naming the folder otherwise."""
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        os.remove(new_temp_path(path, ".check"))
    except OSError as err:
        raise OSError(f"cannot write to output directory {path}: {err.strerror or err}") from err


def check_creatable_dir(path):
    """Raises `OSError` naming `path` unless it is a writable folder or could be created
    as one (checked without creating anything)."""
    path = os.path.abspath(os.fspath(path))
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(f"cannot write to output directory {path}: {existing} is "
                                 "a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write to output directory {path}: {existing} is not "
                              "writable")

