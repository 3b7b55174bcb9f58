"""Import of official PyTorch weights (EDSR-PyTorch, official WDSR, BasicSR EDSR).

    from sisr.port import load_state_dict, port
    state = load_state_dict("edsr_baseline_x2.pt")      # or .npz / .safetensors
    model = port(state, source="edsr-pytorch")          # a sisr EDSR x2, same outputs

    python -m sisr.port --from edsr-pytorch --scale 2 edsr_baseline_x2.pt -o edsr.keras

The architecture (model, filters, blocks, expansion, scale) is read from the key names
and shapes; requested arguments, a `--profile` or `--model`, are checked against it.
Conversion: OIHW -> HWIO kernels, weight norm (g, v) folded into kernels, the output
channels of every conv feeding a pixel shuffle permuted from PyTorch's to TensorFlow's
order, biases rescaled for the normalisation difference (see `sisr.port.rules`). Every
key must be used and every weight of the sisr model filled, or a `PortError` names the
key. The ported model takes and returns RGB on [0, 255], like every sisr model (BasicSR
works on [0, 1]: multiply its outputs by 255 to compare). No state_dict stores the residual
scaling: unless given, it is assumed (0.1 for full EDSR, else none) and logged as such;
`port_checkpoint` returns it with its origin.

Model files of the original Keras project (.h5, both generations) are read by
`load_krasserm` (`--from krasserm`); see `sisr.port.krasserm`.
"""

import logging
import os
from typing import NamedTuple

from sisr.port.io import CheckpointError, as_numpy, load_state_dict
from sisr.port.krasserm import KrassermError, load_krasserm
from sisr.port.request import model_name, with_profile
from sisr.port.rules import (
    FULL_EDSR, FULL_EDSR_SCALING, SOURCES, Architecture, PortError, conv_keys, conv_params,
    describe_basicsr_edsr, describe_edsr_pytorch, describe_wdsr, detect_source, to_keras,
)

__all__ = ["Architecture", "CheckpointError", "KrassermError", "PortError", "Ported", "SOURCES",
           "describe", "load_krasserm", "load_state_dict", "port", "port_checkpoint"]

log = logging.getLogger(__name__)

BUILDER_ARGS = ("scale", "num_filters", "num_res_blocks", "res_block_expansion",
                "res_block_scaling")
_SOURCE_ALIASES = {
    "edsr-pytorch": "edsr-pytorch", "edsr": "edsr-pytorch",
    "wdsr": "wdsr", "wdsr-ntire2018": "wdsr", "wdsr-official": "wdsr",
    "wdsr-a": "wdsr", "wdsr-b": "wdsr",
    "basicsr-edsr": "basicsr-edsr", "basicsr": "basicsr-edsr",
}


def _source_name(source, state_dict):
    if source in (None, "auto"):
        detected = detect_source(state_dict)
        if detected is None:
            raise PortError(
                "cannot tell the checkpoint's source from its keys (found e.g. "
                f"{', '.join(sorted(state_dict)[:5])}); expected EDSR-PyTorch (sub_mean.*, "
                "head.0.*), official WDSR (head.0.*, skip.0.*) or BasicSR EDSR (conv_first.*)"
            )
        return detected
    key = str(source).lower().replace("_", "-")
    if key not in _SOURCE_ALIASES:
        raise PortError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    return _SOURCE_ALIASES[key]


def describe(state_dict, source="auto", img_range=255.0):
    """Infers the `Architecture` of a state_dict (model, builder args, conv mapping)."""
    name = _source_name(source, state_dict)
    try:
        if name == "edsr-pytorch":
            return describe_edsr_pytorch(state_dict)
        if name == "wdsr":
            return describe_wdsr(state_dict)
        return describe_basicsr_edsr(state_dict, img_range=img_range)
    except PortError as err:
        detected = detect_source(state_dict)
        if detected not in (None, name):
            raise PortError(f"{err} (its keys look like the {detected} layout)") from err
        raise




def _check_requested(arch, model, requested):
    """Raises PortError naming the keys behind every requested value that disagrees."""
    problems = []
    if model is not None and model_name(model) != arch.model:
        problems.append(f"model: requested {model!r}, the state_dict is {arch.model} "
                        f"({arch.evidence.get('model', arch.source + ' layout')})")
    for key, value in requested.items():
        if key == "res_block_scaling" or value is None:
            continue
        if key not in arch.args:
            problems.append(f"{key}: {arch.model} has no such argument")
        elif value != arch.args[key]:
            problems.append(f"{key}: requested {value!r}, the state_dict has "
                            f"{arch.args[key]!r} ({arch.evidence.get(key, 'from its shapes')})")
    if problems:
        raise PortError(f"the {arch.source} state_dict does not match the requested "
                        "architecture: " + "; ".join(problems))


class Ported(NamedTuple):
    """What `port_checkpoint` made: the model, and the residual scaling it chose and why."""

    model: object
    arch: Architecture
    res_block_scaling: object  # float or None (no scaling)
    scaling_origin: str  # "given", "given by profile '<name>'" or "assumed"

    def scaling_note(self, override="res_block_scaling"):
        """E.g. 'residual scaling 0.1 (assumed: not stored in the checkpoint; ...)'."""
        value = "none" if self.res_block_scaling is None else f"{self.res_block_scaling:g}"
        if self.scaling_origin != "assumed":
            return f"residual scaling {value} ({self.scaling_origin})"
        why = ("as published for full EDSR; " if self.res_block_scaling is not None
               else "")
        return (f"residual scaling {value} (assumed: {why}not stored in the checkpoint; "
                f"{override} to override)")


def _scaling(arch, scaling, origin):
    """The residual scaling to build with, and its origin (no state_dict stores it)."""
    if origin is not None:
        return scaling, origin
    if arch.model == "edsr" and all(arch.args.get(k) == v for k, v in FULL_EDSR.items()):
        return FULL_EDSR_SCALING, "assumed"
    return None, "assumed"


def _build(arch, scaling):
    from sisr.model import build

    args = dict(arch.args)
    if scaling is not None:
        args["res_block_scaling"] = scaling
    return build(arch.model, **args)


def _fill(model, arch, state_dict):
    """Sets every conv of `model` from the state_dict; returns the keys used."""
    used = set(arch.checked_keys)
    filled = set()
    for conv in arch.convs:
        weight, bias = conv_params(state_dict, conv.key)
        kernel, bias = to_keras(weight, bias, conv.shuffle, arch.bias_scale)
        try:
            layer = model.get_layer(conv.layer)
        except ValueError as err:
            raise PortError(f"{conv.key}: the sisr {arch.model} model has no layer "
                            f"{conv.layer!r}") from err
        expected = tuple(layer.kernel.shape)
        if kernel.shape != expected:
            weight_key = conv_keys(state_dict, conv.key)[-2]
            raise PortError(
                f"{weight_key} has shape {tuple(weight.shape)} (OIHW), but sisr's "
                f"{conv.layer} expects {(expected[3], expected[2]) + expected[:2]} for "
                f"{arch.model} {arch.args}"
            )
        layer.set_weights([kernel, bias])
        filled.add(conv.layer)
        used.update(conv_keys(state_dict, conv.key))

    unused = sorted(set(state_dict) - used)
    if unused:
        raise PortError(f"unexpected key(s) in the {arch.source} state_dict, not part of "
                        f"{arch.model} {arch.args}: {', '.join(unused)}")
    unfilled = [layer.name for layer in model.layers if layer.weights and layer.name not in filled]
    if unfilled:
        raise PortError(f"no weights in the state_dict for sisr layer(s) {', '.join(unfilled)}")
    return used


def port(state_dict, source="auto", scale=None, model=None, profile=None, img_range=255.0,
         **builder_args):
    """Builds the sisr model of a PyTorch state_dict and loads its weights.

    Args:
        state_dict: a mapping of key -> array (see `load_state_dict`), or a file path.
        source: "edsr-pytorch", "wdsr", "basicsr-edsr", or "auto" (from the keys).
        scale: if given, must equal the scale of the state_dict's upsampler.
        model: if given ("edsr", "wdsr_a", "wdsr_b"), must be the state_dict's model.
        profile: a training profile name or JSON path (see `load_profile`) whose model
            and builder arguments are checked, and whose `res_block_scaling` is used.
        img_range: BasicSR's `img_range` (255 in its EDSR configs; not in the file).
        **builder_args: builder arguments to check (`num_filters`, `num_res_blocks`,
            `res_block_expansion`), and `res_block_scaling`, which the state_dict
            cannot tell (assumed if neither given nor in the profile: 0.1 for full EDSR,
            256 filters and 32 blocks, else none; the log says which).

    Returns:
        A `keras.Model` whose outputs equal the PyTorch model's (on the [0, 255] scale).

    Raises:
        PortError: a missing, extra or wrong-shaped key, an unsupported configuration,
            or a mismatch with the requested architecture (naming the keys).
    """
    return port_checkpoint(state_dict, source=source, scale=scale, model=model,
                           profile=profile, img_range=img_range, **builder_args).model


def port_checkpoint(state_dict, source="auto", scale=None, model=None, profile=None,
                    img_range=255.0, **builder_args):
    """`port`, returning a `Ported`: the model and the residual scaling used, and why."""
    if isinstance(state_dict, (str, os.PathLike)):
        state_dict = load_state_dict(state_dict)
    else:
        state_dict = as_numpy(state_dict)
    unknown = sorted(set(builder_args) - set(BUILDER_ARGS))
    if unknown:
        raise TypeError(f"port: unknown argument(s) {', '.join(unknown)}")
    arch = describe(state_dict, source, img_range=img_range)
    if model is None and str(source).lower().replace("_", "-") in ("wdsr-a", "wdsr-b"):
        model = str(source).lower().replace("-", "_")  # the source names the variant

    requested = dict(builder_args)
    origin = "given" if requested.get("res_block_scaling") is not None else None
    if profile is not None:
        model, requested, prof = with_profile(profile, model, requested, BUILDER_ARGS)
        if origin is None and "res_block_scaling" in prof:  # null there means none
            origin = f"given by profile {profile!r}"
    if scale is not None:
        requested["scale"] = scale
    _check_requested(arch, model, requested)

    scaling, origin = _scaling(arch, requested.get("res_block_scaling"), origin)
    keras_model = _build(arch, scaling)
    used = _fill(keras_model, arch, state_dict)
    ported = Ported(keras_model, arch, scaling, origin)
    log.info("ported %d keys of the %s state_dict into %s %s, %s", len(used), arch.source,
             arch.model, arch.args, ported.scaling_note())
    return ported

