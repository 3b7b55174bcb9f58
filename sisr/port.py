"""Import of official PyTorch weights (EDSR-PyTorch, official WDSR, BasicSR EDSR).

    from sisr.port import load_state_dict, port
    state = load_state_dict("edsr_baseline_x2.pt")      # or .npz / .safetensors
    model = port(state, source="edsr-pytorch")          # a sisr EDSR x2, same outputs

    python -m sisr.port --from edsr-pytorch --scale 2 edsr_baseline_x2.pt -o edsr.keras

The architecture (model, filters, blocks, expansion, scale) is read from the key names
and shapes; requested arguments, a `--profile` or `--model`, are checked against it.
Conversion: OIHW -> HWIO kernels, weight norm (g, v) folded into kernels, the output
channels of every conv feeding a pixel shuffle permuted from PyTorch's to TensorFlow's
order, biases rescaled for the normalisation difference (see `sisr.port_rules`). Every
key must be used and every weight of the sisr model filled, or a `PortError` names the
key. The ported model takes and returns RGB on [0, 255], like every sisr model (BasicSR
works on [0, 1]: multiply its outputs by 255 to compare).
"""

import argparse
import json
import logging
import os
import pathlib
import sys

import numpy as np

from sisr.port_io import CheckpointError, as_numpy, load_state_dict
from sisr.port_rules import (
    FULL_EDSR, FULL_EDSR_SCALING, SOURCES, Architecture, PortError, conv_keys, conv_params,
    describe_basicsr_edsr, describe_edsr_pytorch, describe_wdsr, detect_source, to_keras,
)

__all__ = ["Architecture", "CheckpointError", "PortError", "SOURCES", "describe",
           "load_profile", "load_state_dict", "main", "port"]

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


def _model_name(name):
    return None if name is None else str(name).replace("-", "_").lower()


def _check_requested(arch, model, requested):
    """Raises PortError naming the keys behind every requested value that disagrees."""
    problems = []
    if model is not None and _model_name(model) != arch.model:
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


def _build(arch, scaling):
    from sisr.model import build

    args = dict(arch.args)
    if scaling is None and arch.model == "edsr" and all(
            args.get(k) == v for k, v in FULL_EDSR.items()):
        scaling = FULL_EDSR_SCALING
        log.info("full EDSR (256 filters, 32 blocks): residual scaling %s as published "
                 "(not stored in the state_dict; pass res_block_scaling to override)", scaling)
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
            cannot tell (default: 0.1 for full EDSR, 256 filters and 32 blocks, else none).

    Returns:
        A `keras.Model` whose outputs equal the PyTorch model's (on the [0, 255] scale).

    Raises:
        PortError: a missing, extra or wrong-shaped key, an unsupported configuration,
            or a mismatch with the requested architecture (naming the keys).
    """
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
    if profile is not None:
        prof = load_profile(profile)
        prof_model = prof.get("model")
        if model is not None and prof_model is not None and \
                _model_name(model) != _model_name(prof_model):
            raise PortError(f"model {model!r} contradicts profile {profile!r} "
                            f"(model {prof_model!r})")
        model = model if model is not None else prof_model
        for key in BUILDER_ARGS:
            # explicit arguments win over the profile's (a profile's scale is a default)
            if requested.get(key) is None and prof.get(key) is not None:
                requested[key] = prof[key]
    if scale is not None:
        requested["scale"] = scale
    _check_requested(arch, model, requested)

    keras_model = _build(arch, requested.get("res_block_scaling"))
    used = _fill(keras_model, arch, state_dict)
    log.info("ported %d keys of the %s state_dict into %s %s", len(used), arch.source,
             arch.model, arch.args)
    return keras_model


# ---------------------------------------------------------------- profiles

def _profile_dirs():
    here = pathlib.Path(__file__).resolve().parent
    return [pathlib.Path.cwd() / "profiles", here.parent / "profiles", here / "profiles"]


def load_profile(profile):
    """Reads a training profile: a JSON file path, or a name looked up in `profiles/`.

    Names are looked up as `profiles/<name>.json` in the current directory and beside
    the sisr package. Returns the profile's flat dict ("model", builder args, ...).
    """
    candidates = []
    text = os.fspath(profile)
    if text.endswith(".json") or os.path.sep in text:
        candidates.append(pathlib.Path(text))
    else:
        candidates += [d / f"{text}.json" for d in _profile_dirs()]
    for path in candidates:
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise PortError(f"profile {path}: not valid JSON: {err}") from err
            if not isinstance(data, dict):
                raise PortError(f"profile {path}: expected a JSON object")
            return data
    raise PortError(f"profile {profile!r} not found (looked for "
                    f"{', '.join(str(p) for p in candidates)})")


# ---------------------------------------------------------------- CLI

def _parser():
    p = argparse.ArgumentParser(
        prog="python -m sisr.port",
        description="Convert an official PyTorch checkpoint (EDSR-PyTorch, official WDSR, "
                    "BasicSR EDSR) into a sisr .keras model with the same outputs.")
    p.add_argument("weights", help="state_dict file: .npz, .safetensors, or .pt/.pth "
                                   "(needs torch)")
    p.add_argument("-o", "--output", required=True, help="the .keras file to write")
    p.add_argument("--from", dest="source", default="auto",
                   choices=("auto",) + SOURCES, help="the checkpoint's code base "
                                                     "(default: detected from the keys)")
    p.add_argument("--profile", help="training profile (name in profiles/ or JSON path) "
                                     "to check the architecture against")
    p.add_argument("--model", choices=("edsr", "wdsr_a", "wdsr_b"),
                   help="expected sisr model")
    p.add_argument("--scale", type=int, help="expected scale")
    p.add_argument("--num-filters", type=int)
    p.add_argument("--num-res-blocks", type=int)
    p.add_argument("--res-block-expansion", type=int)
    p.add_argument("--res-block-scaling", type=float,
                   help="residual scaling (not stored in checkpoints; default 0.1 for "
                        "full EDSR, else none)")
    p.add_argument("--img-range", type=float, default=255.0,
                   help="BasicSR img_range (default 255)")
    p.add_argument("--param-key", help="entry of a wrapped checkpoint to read "
                                       "(e.g. params or params_ema)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    return p


def main(argv=None):
    """CLI entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.output.endswith(".keras"):
        print(f"error: --output must end with .keras, got {args.output!r}", file=sys.stderr)
        return 2
    if os.path.exists(args.output) and not args.force:
        print(f"error: {args.output} exists; pass --force to overwrite it", file=sys.stderr)
        return 1
    builder_args = {
        "num_filters": args.num_filters, "num_res_blocks": args.num_res_blocks,
        "res_block_expansion": args.res_block_expansion,
        "res_block_scaling": args.res_block_scaling,
    }
    try:
        state_dict = load_state_dict(args.weights, param_key=args.param_key)
        model = port(state_dict, source=args.source, scale=args.scale, model=args.model,
                     profile=args.profile, img_range=args.img_range,
                     **{k: v for k, v in builder_args.items() if v is not None})
    except (OSError, CheckpointError, PortError) as err:
        print(f"error: {args.weights}: {err}", file=sys.stderr)
        return 1

    from sisr.saving import save_model

    try:
        save_model(model, args.output)
    except OSError as err:
        print(f"error: cannot write {args.output}: {err}", file=sys.stderr)
        return 1
    params = int(sum(np.prod(w.shape) for w in model.weights))
    print(f"{args.weights} -> {args.output}: {model.name}, {len(state_dict)} keys, "
          f"{params:,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
