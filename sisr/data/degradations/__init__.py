"""On-the-fly degradations: LR images made from HR crops per sample, in tf.data.

Presets are JSON files of parameters (sisr/data/degradations/presets/): `simple`,
`bsrgan` and `realesrgan`; a user's JSON file with the same keys is a preset too.

    from sisr.data.degradations import load_preset, degradation
    preset = load_preset("realesrgan")          # a dict, validated
    degrade = degradation(preset, scale=4)      # (hr float [0, 1], seed int32[2]) -> (lr, target)
"""

import importlib.resources
import json
import numbers
import os

from sisr.errors import SisrError

PRESET_NAMES = ("simple", "bsrgan", "realesrgan")
_KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
                 "plateau_aniso")


class DegradationError(SisrError, ValueError):
    """A degradation preset that cannot be used; the message names the file and key."""


def _prob(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 <= v <= 1


def _range(v):
    return (isinstance(v, list) and len(v) == 2
            and all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in v)
            and v[0] <= v[1])


def _probs(v, n=None):
    return (isinstance(v, list) and (n is None or len(v) == n) and all(_prob(x) for x in v)
            and sum(v) > 0)


def _kernel_size(v):
    return isinstance(v, int) and not isinstance(v, bool) and v % 2 == 1 and 7 <= v <= 41


# key -> (check, what it must be)
_RANGE = (_range, "a [low, high] pair of numbers")
_PROB = (_prob, "a probability in [0, 1]")
_SIZE = (_kernel_size, "an odd int from 7 to 41")
_KERNELS = (lambda v: isinstance(v, list) and v and all(k in _KERNEL_TYPES for k in v),
            f"a list of kernel types from {', '.join(_KERNEL_TYPES)}")
_RESIZE_PROBS = (lambda v: _probs(v, 3), "3 probabilities (up, down, keep)")

SCHEMAS = {
    "simple": {"blur_kernel_size": _SIZE, "blur_sigma": _RANGE, "noise_range": _RANGE,
               "jpeg_prob": _PROB, "jpeg_range": _RANGE},
    "bsrgan": {"scale2_prob": _PROB, "jpeg_prob": _PROB, "noise_range": _RANGE,
               "jpeg_range": _RANGE},
    "realesrgan": {
        "gt_usm": (lambda v: isinstance(v, bool), "true or false"),
        **{key + suffix: check for suffix in ("", "2") for key, check in {
            "blur_kernel_size": _SIZE, "kernel_list": _KERNELS,
            "kernel_prob": (_probs, "a list of probabilities, one per kernel type"),
            "sinc_prob": _PROB, "blur_sigma": _RANGE, "betag_range": _RANGE,
            "betap_range": _RANGE, "resize_prob": _RESIZE_PROBS, "resize_range": _RANGE,
            "gaussian_noise_prob": _PROB, "noise_range": _RANGE,
            "poisson_scale_range": _RANGE, "gray_noise_prob": _PROB,
            "jpeg_range": _RANGE}.items()},
        "second_blur_prob": _PROB, "final_sinc_prob": _PROB,
    },
}
_QUALITY_KEYS = ("jpeg_range", "jpeg_range2")


def preset_path(name):
    return importlib.resources.files("sisr.data.degradations").joinpath(
        "presets", f"{name}.json")


def validate(values, where):
    """Checks a preset dict; raises DegradationError naming `where` and the key."""
    if not isinstance(values, dict):
        raise DegradationError(f"{where}: a degradation preset is a JSON object")
    kind = values.get("type")
    if kind not in SCHEMAS:
        raise DegradationError(f"{where}: key `type` must be one of {', '.join(SCHEMAS)}, "
                               f"got {kind!r}")
    schema = SCHEMAS[kind]
    unknown = sorted(set(values) - set(schema) - {"type", "source"})
    if unknown:
        raise DegradationError(f"{where}: unknown key `{unknown[0]}` for type {kind}; "
                               f"allowed: {', '.join(sorted(schema))}")
    for key, (check, what) in schema.items():
        if key not in values:
            raise DegradationError(f"{where}: missing key `{key}` ({what})")
        if not check(values[key]):
            raise DegradationError(f"{where}: key `{key}` must be {what}, "
                                   f"got {values[key]!r}")
    for key in _QUALITY_KEYS:
        if key in values and not 1 <= values[key][0] <= values[key][1] <= 100:
            raise DegradationError(f"{where}: key `{key}` must be JPEG qualities in "
                                   f"[1, 100], got {values[key]!r}")
    for suffix in ("", "2"):
        if f"kernel_list{suffix}" in values and len(values[f"kernel_list{suffix}"]) != len(
                values[f"kernel_prob{suffix}"]):
            raise DegradationError(f"{where}: key `kernel_prob{suffix}` needs one "
                                   f"probability per entry of `kernel_list{suffix}`")
    return values


def load_preset(name_or_path):
    """A validated preset dict from a preset name, a .json path or a dict."""
    if isinstance(name_or_path, dict):
        return validate(dict(name_or_path), "degradation")
    if not isinstance(name_or_path, str):
        raise DegradationError(f"degradation must be a preset name ({', '.join(PRESET_NAMES)})"
                               f", a .json file or a JSON object, got {name_or_path!r}")
    if name_or_path in PRESET_NAMES:
        text, where = preset_path(name_or_path).read_text(), f"preset {name_or_path}"
    elif name_or_path.endswith(".json") or os.path.sep in name_or_path:
        where = name_or_path
        try:
            with open(name_or_path, encoding="utf-8") as f:
                text = f.read()
        except OSError as err:
            raise DegradationError(f"{where}: cannot read: {err.strerror}") from None
    else:
        raise DegradationError(f"unknown degradation {name_or_path!r}: a preset "
                               f"({', '.join(PRESET_NAMES)}) or a .json file")
    try:
        values = json.loads(text)
    except json.JSONDecodeError as err:
        raise DegradationError(f"{where}: not valid JSON: {err}") from None
    return validate(values, where)


def degradation(preset, scale):
    """The function `(hr, seed) -> (lr, target)` of a preset (a name, path or dict)."""
    from sisr.data.degradations.models import MODELS

    preset = load_preset(preset)
    return MODELS[preset["type"]](preset, int(scale))
