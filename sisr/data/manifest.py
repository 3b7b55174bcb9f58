"""The conversion manifest: what `python -m sisr.convert` wrote, from which source.

`sisr_manifest.json` at the root of every conversion output records, per output file
(path relative to that root): the source file (relative to `source_root`), its size and
mtime, the output's shape, byte size, mtime and SHA-256, and the conversion (`kind` and
`params`). An output is *current* only if its entry matches the source as it is now and
the output still has its recorded size and contents; anything else (a crash mid-way, a
changed source, a truncated or altered file) is rebuilt by the converter and refused by the
dataset readers. Files are entered as `pending` before they are written, so the converter
can tell its own interrupted outputs from files it never wrote (which it does not replace).

Checking contents costs a read of the file, so it is done when the file's mtime differs
from the recorded one (an edit, or a copy that did not keep times), once per process;
`python -m sisr.convert verify` re-hashes everything. Entries written before checksums
existed (no `sha256`) are checked by size only, until a conversion run adds the checksum.
"""

import hashlib
import json
import logging
import os

from sisr.errors import SisrError
from sisr.fileio import atomic_output

log = logging.getLogger(__name__)

MANIFEST_NAME = "sisr_manifest.json"
FORMAT = "sisr-conversion-manifest"
VERSION = 2
_CHUNK = 1 << 20
# (path, size, mtime_ns) -> sha256 of files whose contents this process checked.
_checked = {}

# Codes of `Manifest.status`.
OK = "ok"
UNRECORDED = "unrecorded"
PENDING = "pending"
OTHER_CONVERSION = "other-conversion"
MISSING = "missing"
WRONG_SIZE = "wrong-size"
STALE = "stale"
CHECKSUM = "checksum"


class ManifestError(SisrError, ValueError):
    """A cache file is not (or no longer) a complete, current conversion output."""


def sha256_file(path):
    """The SHA-256 of a file's contents, as hex."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while True:
            count = f.readinto(buffer)
            if not count:
                return digest.hexdigest()
            digest.update(view[:count])


def _source_stat(path):
    stat = os.stat(path)
    return {"source_size": stat.st_size, "source_mtime_ns": stat.st_mtime_ns}


class Manifest:
    """The manifest of one output root (see the module docstring)."""

    def __init__(self, root, source_root=None, entries=None):
        self.root = root
        self.source_root = source_root
        self.entries = dict(entries or {})

    @property
    def path(self):
        return os.path.join(self.root, MANIFEST_NAME)

    @classmethod
    def load(cls, root):
        """The manifest in `root`, or None if there is none; ManifestError if unreadable."""
        path = os.path.join(root, MANIFEST_NAME)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise ManifestError(f"{path}: unreadable conversion manifest ({err})") from None
        if (not isinstance(data, dict) or data.get("format") != FORMAT
                or not isinstance(data.get("entries", {}), dict)):
            raise ManifestError(f"{path}: not a sisr conversion manifest")
        return cls(root, data.get("source_root"), data.get("entries", {}))

    def save(self):
        data = {"format": FORMAT, "version": VERSION, "source_root": self.source_root,
                "entries": dict(sorted(self.entries.items()))}
        with atomic_output(self.path) as temp:
            with open(temp, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=0)

    def _source(self, source_path):
        return os.path.relpath(source_path, self.source_root)

    def mark_pending(self, rel_output, source_path, kind, params):
        """Enters an output that is about to be written (see the module docstring)."""
        self.entries[rel_output] = {"source": self._source(source_path), "kind": kind,
                                    "params": params, "pending": True}

    def record(self, rel_output, source_path, kind, params, shape, note=None, sha256=None):
        """Records a finished output; `sha256` of its contents (computed if not given)."""
        output = os.path.join(self.root, rel_output)
        stat = os.stat(output)
        entry = {"source": self._source(source_path), "kind": kind, "params": params,
                 "shape": list(shape), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                 "sha256": sha256 or sha256_file(output)}
        entry.update(_source_stat(source_path))
        if note:
            entry["note"] = note
        self.entries[rel_output] = entry

    def add_checksum(self, rel_output, sha256=None):
        """Records the checksum and mtime of a current output recorded without them."""
        output = os.path.join(self.root, rel_output)
        entry = self.entries[rel_output]
        entry["mtime_ns"] = os.stat(output).st_mtime_ns
        entry["sha256"] = sha256 or sha256_file(output)

    def status(self, rel_output, kind=None, params=None, check_source=True, verify="changed"):
        """(code, sentence): whether `rel_output` is a current output, and if not why.

        `verify`: "changed" hashes the file only if its mtime differs from the recorded
        one (once per process; a match re-records the mtime in memory), "always" hashes it,
        "never" checks sizes only. The code is `OK` (sentence None) or one of the
        module's problem codes.
        """
        entry = self.entries.get(rel_output)
        output = os.path.join(self.root, rel_output)
        if entry is None:
            return UNRECORDED, f"is not recorded in {self.path} (sisr did not write it)"
        if entry.get("pending"):
            return PENDING, "is unfinished: its conversion was interrupted or failed"
        if kind is not None and (entry.get("kind") != kind or entry.get("params") != params):
            return OTHER_CONVERSION, (f"was made by '{entry.get('kind')}' "
                                      f"{entry.get('params')}, not '{kind}' {params}")
        try:
            stat = os.stat(output)
        except OSError:
            return MISSING, "is missing"
        if stat.st_size != entry.get("size"):
            return WRONG_SIZE, (f"has {stat.st_size} bytes, the manifest recorded "
                                f"{entry.get('size')} (truncated?)")
        if check_source and self.source_root:
            source = os.path.join(self.source_root, entry["source"])
            try:
                current = _source_stat(source)
            except OSError:
                current = None  # the source tree is gone: nothing to compare with
            if current is not None and (
                    current["source_size"] != entry.get("source_size")
                    or current["source_mtime_ns"] != entry.get("source_mtime_ns")):
                return STALE, f"is stale: its source {source} changed after the conversion"
        if "sha256" in entry and self._contents_changed(output, stat, entry, verify):
            return CHECKSUM, ("changed after the conversion: its checksum (SHA-256) differs "
                              "from the recorded one")
        return OK, None

    def problem(self, rel_output, kind=None, params=None, check_source=True,
                verify="changed"):
        """Why `rel_output` is not a current output (a sentence), or None if it is."""
        return self.status(rel_output, kind, params, check_source, verify)[1]

    @staticmethod
    def _contents_changed(output, stat, entry, verify):
        if verify == "never" or (verify == "changed"
                                 and stat.st_mtime_ns == entry.get("mtime_ns")):
            return False
        key = (os.path.abspath(output), stat.st_size, stat.st_mtime_ns)
        if verify == "always" or key not in _checked:
            _checked[key] = sha256_file(output)
        if _checked[key] != entry["sha256"]:
            return True
        entry["mtime_ns"] = stat.st_mtime_ns
        return False

    def command(self, root=None):
        """The `python -m sisr.convert` command that completes this output root."""
        conversions = {(e.get("kind"), json.dumps(e.get("params"), sort_keys=True))
                       for e in self.entries.values()}
        kind, params = conversions.pop() if len(conversions) == 1 else ("numpy", "{}")
        params = json.loads(params) or {}
        options = ""
        if "quality" in params:
            options += f" --quality {params['quality']}"
        if params.get("subsampling", "pillow-default") != "pillow-default":
            options += f" --subsampling {params['subsampling']}"
        if "scale" in params:
            options += f" --scale {params['scale']}"
            suffix = self._suffix()
            if suffix:
                options += f" --suffix {suffix}"
        source = self.source_root or "SOURCE"
        return f"python -m sisr.convert {kind}{options} -i {source} -o {root or self.root}"

    def _suffix(self):
        """The --suffix of a downscale conversion: output stem = source stem + suffix."""
        for rel, entry in self.entries.items():
            out_stem = os.path.splitext(os.path.basename(rel))[0]
            source_stem = os.path.splitext(os.path.basename(entry.get("source", "")))[0]
            if out_stem.startswith(source_stem):
                return out_stem[len(source_stem):]
        return ""


def _find(path, loaded):
    """(manifest, code, sentence) for a cache file: from the nearest manifest (in its folder
    or above) that records it, else from the nearest manifest, else (None, ...)."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    nearest = None
    while True:
        if folder not in loaded:
            loaded[folder] = Manifest.load(folder)
        manifest = loaded[folder]
        if manifest is not None:
            code, problem = manifest.status(os.path.relpath(path, folder))
            if code != UNRECORDED:
                return manifest, code, problem
            nearest = nearest or (manifest, code, problem)
        parent = os.path.dirname(folder)
        if parent == folder:
            return nearest or (None, UNRECORDED,
                               f"has no {MANIFEST_NAME} in its folder or above")
        folder = parent


def find_manifest_problem(path, loaded):
    """Checks that a cache file is a current conversion output.

    Looks for the manifest in the file's folder and its ancestors; `loaded` is a dict
    (folder -> Manifest or None) reused across calls to read each manifest once.
    Returns None if the file is current, else a sentence saying what is wrong.
    """
    return _find(path, loaded)[2]


def cache_file_error(path, loaded):
    """A `ManifestError` saying what is wrong with a `.npy` cache file and what to do about
    it, or None if the file is a current conversion output (`loaded` as for
    `find_manifest_problem`)."""
    manifest, code, problem = _find(path, loaded)
    if code == OK:
        return None
    if manifest is None:
        advice = ("convert the images with python -m sisr.convert numpy -i IMAGES -o CACHE "
                  "(--force replaces .npy files already there), or use the images directly")
    elif code == UNRECORDED:
        advice = (f"delete it or move it out of {manifest.root}; re-running the conversion "
                  "does not touch it. To convert its source image instead, put it under "
                  f"{manifest.source_root or 'the input folder'} and run "
                  f"{manifest.command()} --force")
    else:
        advice = f"rebuild it with {manifest.command()}"
    return ManifestError(f"{path}: numpy cache file {problem}; {advice}")


def _missing_recorded(paths, loaded):
    """Recorded, finished outputs in the folders of `paths` that are no longer on disk.

    A dataset lists the files present, so a deleted cache file would otherwise just drop
    out of training without a word."""
    folders = {os.path.dirname(os.path.abspath(p)) for p in paths}
    manifests = {id(m): m for m in loaded.values() if m is not None}
    missing = []
    for manifest in manifests.values():
        for rel, entry in sorted(manifest.entries.items()):
            output = os.path.join(os.path.abspath(manifest.root), rel)
            if (os.path.dirname(output) in folders and not entry.get("pending")
                    and not os.path.lexists(output)):
                missing.append(os.path.join(manifest.root, rel))
    return missing


def check_cache_files(paths):
    """Raises a `ManifestError` (one line: the first bad file, what to do, and the other
    bad files) unless every `.npy` path is a current conversion output, and no output
    that the manifests record in the same folders is missing."""
    loaded, errors = {}, []
    for path in paths:
        error = cache_file_error(path, loaded)
        if error is not None:
            errors.append((path, error))
    for path in _missing_recorded(paths, loaded):
        manifest = _find(path, loaded)[0]
        errors.append((path, ManifestError(
            f"{path}: numpy cache file is recorded in {manifest.path} but missing (deleted?); "
            f"rebuild it with {manifest.command()}")))
    if errors:
        message = str(errors[0][1])
        others = [path for path, _ in errors[1:]]
        if others:
            message += (f" ({len(others)} more such file(s): {', '.join(others[:5])}"
                        f"{' ...' if len(others) > 5 else ''})")
        raise ManifestError(message)
