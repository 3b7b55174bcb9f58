"""Weights files: sha256 checks, safe extraction of one archive member, installed copies."""

import hashlib
import importlib.util
import logging
import os
import shutil
import tarfile
import zipfile

from sisr.pretrained.registry import PretrainedError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def sha256_of(path):
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_matches(entry, digest):
    """True if `digest` is the entry's sha256 (or starts with its file-name prefix).

    Entries without any known hash match nothing: callers decide whether a user's file
    may be used unverified.
    """
    if entry.sha256:
        return digest == entry.sha256
    if entry.sha256_prefix:
        return digest.startswith(entry.sha256_prefix)
    return False


def mirror_of(entry, digest):
    """The entry's `Mirror` whose name's sha256 prefix `digest` starts with, or None."""
    for mirror in entry.mirrors:
        if digest.startswith(mirror.sha256_prefix):
            return mirror
    return None


def verify(entry, path, what, mirrors=False):
    """Checks `path` against the entry's hash; returns its sha256.

    Raises `PretrainedError` saying that the hash is wrong (`what` names the file's
    origin). Files of entries without a known hash are accepted with a warning. With
    `mirrors`, a copy published in another layout (`entry.mirrors`) is accepted too.
    """
    digest = sha256_of(path)
    if mirrors and mirror_of(entry, digest) is not None:
        return digest
    if not entry.verifiable:
        log.warning("%s: %s has no published sha256 to check %s against; using it "
                    "unverified (its sha256 is %s)", entry.name, entry.file, path, digest)
        return digest
    if not hash_matches(entry, digest):
        raise PretrainedError(
            f"{entry.name}: {what} {path} has the wrong sha256 ({digest}; expected "
            f"{entry.describe_hash()}): refused, it is not the published {entry.file}"
            + "".join(f" nor {m.source}'s {m.file}" for m in entry.mirrors if mirrors))
    return digest


def is_tar(path):
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def is_archive(path):
    """True for a tar or zip archive (the kinds `extract_member` reads)."""
    return is_tar(path) or zipfile.is_zipfile(path)


def _extract_zip_member(archive, member, destination):
    try:
        with zipfile.ZipFile(archive) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                info = None
            if info is None or info.is_dir():
                raise PretrainedError(f"{archive} has no file {member}")
            with zf.open(info) as source, open(destination, "wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError) as err:
        raise PretrainedError(f"cannot read {member} from the archive {archive}: {err}") \
            from None
    return destination


def extract_member(archive, member, destination):
    """Copies regular-file `member` of the tar or zip `archive` to the path `destination`.

    Only that member is read; its name is matched exactly (no path of the archive is
    ever used to write), so links and `..` entries cannot write outside `destination`.
    """
    if not is_tar(archive) and zipfile.is_zipfile(archive):
        return _extract_zip_member(archive, member, destination)
    try:
        with tarfile.open(archive) as tar:
            try:
                info = tar.getmember(member)
            except KeyError:
                info = None
            if info is None or not info.isfile():
                raise PretrainedError(f"{archive} has no file {member}")
            source = tar.extractfile(info)
            with open(destination, "wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise PretrainedError(f"cannot read {member} from the archive {archive}: {err}") \
            from None
    return destination


def installed_copy(source):
    """The path of an installed package's data file `{"package", "path"}`, or None.

    The package is located without importing it (no code of it runs).
    """
    try:
        spec = importlib.util.find_spec(source["package"])
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        path = os.path.join(base, *source["path"].split("/"))
        if os.path.isfile(path):
            return path
    return None
