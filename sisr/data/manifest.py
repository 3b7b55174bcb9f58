"""The conversion manifest: what `python -m sisr.convert` wrote, from which source.

`sisr_manifest.json` at the root of every conversion output records, per output file
(path relative to that root): the source file (relative to `source_root`), its size and
mtime, the output's shape and byte size, and the conversion (`kind` and `params`). An
output is *current* only if its entry matches the source as it is now and the output
still has its recorded size; anything else (a crash mid-way, a changed source, a
truncated file) is rebuilt by the converter and refused by the dataset readers.
"""

import json
import logging
import os

from sisr.errors import SisrError
from sisr.fileio import atomic_output

log = logging.getLogger(__name__)

MANIFEST_NAME = "sisr_manifest.json"
FORMAT = "sisr-conversion-manifest"
VERSION = 1


class ManifestError(SisrError, ValueError):
    """A cache file is not (or no longer) a complete, current conversion output."""


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
        """The manifest in `root`, or None if there is none; ValueError if unreadable."""
        path = os.path.join(root, MANIFEST_NAME)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise ManifestError(f"{path}: unreadable conversion manifest ({err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ManifestError(f"{path}: not a sisr conversion manifest")
        return cls(root, data.get("source_root"), data.get("entries", {}))

    def save(self):
        data = {"format": FORMAT, "version": VERSION, "source_root": self.source_root,
                "entries": dict(sorted(self.entries.items()))}
        with atomic_output(self.path) as temp:
            with open(temp, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=0)

    def record(self, rel_output, source_path, kind, params, shape, note=None):
        entry = {"source": os.path.relpath(source_path, self.source_root), "kind": kind,
                 "params": params, "shape": list(shape),
                 "size": os.path.getsize(os.path.join(self.root, rel_output))}
        entry.update(_source_stat(source_path))
        if note:
            entry["note"] = note
        self.entries[rel_output] = entry

    def problem(self, rel_output, kind=None, params=None, check_source=True):
        """Why `rel_output` is not a current output (a sentence), or None if it is."""
        entry = self.entries.get(rel_output)
        output = os.path.join(self.root, rel_output)
        if entry is None:
            return "not recorded in the manifest (incomplete conversion?)"
        if kind is not None and (entry.get("kind") != kind or entry.get("params") != params):
            return (f"made by '{entry.get('kind')}' {entry.get('params')}, not '{kind}' "
                    f"{params}")
        try:
            size = os.path.getsize(output)
        except OSError:
            return "missing"
        if size != entry.get("size"):
            return f"has {size} bytes, the manifest recorded {entry.get('size')} (truncated?)"
        if check_source and self.source_root:
            source = os.path.join(self.source_root, entry["source"])
            try:
                current = _source_stat(source)
            except OSError:
                return None  # the source tree is gone: nothing to compare with
            if (current["source_size"] != entry.get("source_size")
                    or current["source_mtime_ns"] != entry.get("source_mtime_ns")):
                return f"stale: its source {source} changed after the conversion"
        return None


def find_manifest_problem(path, loaded):
    """Checks that a cache file is a current conversion output.

    Looks for the manifest in the file's folder and its ancestors; `loaded` is a dict
    (folder -> Manifest or None) reused across calls to read each manifest once.
    Returns None if the file is current, else a sentence saying what is wrong.
    """
    folder = os.path.dirname(os.path.abspath(path))
    first_problem = None
    while True:
        if folder not in loaded:
            loaded[folder] = Manifest.load(folder)
        manifest = loaded[folder]
        if manifest is not None:
            rel = os.path.relpath(os.path.abspath(path), folder)
            problem = manifest.problem(rel)
            if problem is None:
                return None
            if rel in manifest.entries:
                return problem
            first_problem = first_problem or problem
        parent = os.path.dirname(folder)
        if parent == folder:
            return first_problem or f"no {MANIFEST_NAME} found in its folder or above"
        folder = parent
