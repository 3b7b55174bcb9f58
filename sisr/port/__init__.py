"""Import of trained checkpoints: official PyTorch weights (EDSR-PyTorch, official WDSR,
BasicSR EDSR) and the original Keras project's model files.

    from sisr.port import load_state_dict, port
    state = load_state_dict("edsr_baseline_x2.pt")      # or .npz / .safetensors
    model = port(state)                                 # a sisr EDSR x2, same outputs
    model = port("weights.h5")                          # a krasserm/super-resolution file
    model = port("FSRCNN_x2.pb")                        # an OpenCV dnn_superres graph

    python -m sisr.port edsr_baseline_x2.pt -o edsr.keras [--set res_block_scaling=0.1]

One module per checkpoint layout (`sisr.port.formats`; the layouts are those the
registered models list) tells the layout from the full key set and describes the
checkpoint as a `Plan`: the registered model, the builder arguments it shows (and the
keys they come from), and the converted weights of every sisr layer. One pipeline
(`sisr.port.pipeline`) checks requested arguments (explicit, or a training profile's)
against it, builds the model with `sisr.model.build` and fills every layer; every key
must be used and every weight filled, or a `PortError` names them. A checkpoint that
matches no layout, or several, is refused naming the closest layout and the keys that
differ.

Conversion (`sisr.port.rules`): OIHW -> HWIO kernels, weight norm (g, v) folded into
kernels, the output channels of every conv feeding a pixel shuffle permuted from
PyTorch's to TensorFlow's order, biases rescaled for the normalisation difference. The
ported model takes and returns RGB on [0, 255], like every sisr model (BasicSR works on
[0, 1]: multiply its outputs by 255 to compare). No state_dict stores the residual
scaling: unless given, it is assumed (0.1 for full EDSR, else none) and logged as such;
`port_checkpoint` returns it with its origin.
"""

import logging
import os

from sisr.port.io import CheckpointError, as_numpy, load_state_dict
from sisr.port.krasserm import load_krasserm
from sisr.port.krasserm_layouts import KrassermError
from sisr.port.pipeline import Ported
from sisr.port.plan import Plan, PortError

__all__ = ["Architecture", "CheckpointError", "KrassermError", "Plan", "PortError", "Ported",
           "SOURCES", "builder_arguments", "describe", "load_krasserm", "load_state_dict",
           "port", "port_checkpoint", "sources"]

log = logging.getLogger(__name__)

Architecture = Plan  # the name of a state_dict's description before every format had plans


def sources():
    """The checkpoint formats (`--from` names), from the registered models' layouts."""
    from sisr.port import formats

    return formats.names()


def __getattr__(name):
    # SOURCES is derived from the registry when asked for, not at import time.
    if name == "SOURCES":
        return sources()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def builder_arguments():
    """Every builder argument of a registered model (what `port` may be asked for)."""
    from sisr.model import MODELS

    names = set()
    for spec in MODELS.values():
        names.update(spec.arguments())
    return names


def _state(checkpoint, source, param_key=None):
    """(state, candidate format modules, model the source requests, file path or None)."""
    from sisr.port import formats

    if isinstance(checkpoint, (str, os.PathLike)):
        path = os.fspath(checkpoint)
        if source in (None, formats.AUTO):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"checkpoint file not found: {path}")
            candidates = formats.owner(path)
            candidates = [m for m in candidates if _same_reader(m, candidates[0])]
            # Quiet: which wrapper entry is used is known once the format is (_describe).
            state = formats.reader(candidates[0])(path, param_key=param_key, quiet=True)
            return state, candidates, None, path
        module, model = formats.get(source)
        return formats.reader(module)(path, param_key=param_key), [module], model, path
    state = as_numpy(checkpoint)
    if source in (None, formats.AUTO):
        candidates = [m for m in formats.formats().values() if not hasattr(m, "read")]
        return state, candidates, None, None
    module, model = formats.get(source)
    if hasattr(module, "read"):
        raise PortError(f"the {module.NAME} format reads a file: pass its path, not a "
                        "mapping of arrays")
    return state, [module], model, None


def describe(checkpoint, source="auto", img_range=255.0, param_key=None):
    """The `Plan` of a checkpoint (a state_dict mapping, or a file path): the format, the
    registered model, the builder arguments it shows and why, the weights of each layer.

    Raises:
        PortError: no layout matches, or several do (naming the closest layout and the
            keys that differ), or the checkpoint does not fit the layout (naming keys).
    """
    return _describe(checkpoint, source, {"img_range": img_range}, param_key)[0]


def _describe(checkpoint, source, options, param_key=None):
    from sisr.port import formats

    state, candidates, model, path = _state(checkpoint, source, param_key)
    try:
        if len(candidates) > 1 or source in (None, formats.AUTO):
            module = formats.detect(state, candidates, options)
            state = _preferred_entry(module, state, path, param_key)
            if getattr(state, "entry", None) == "params" and \
                    "params_ema" in getattr(state, "entries", ()):
                log.info("%s: using 'params' (pass param_key='params_ema' for the EMA "
                         "weights)", path)
        else:
            module = candidates[0]
        try:
            plan = module.describe(state, **options)
        except PortError as err:
            if len(candidates) == 1 and source not in (None, formats.AUTO):
                others = [m.NAME for m in formats.formats().values()
                          if m is not module and _same_reader(m, module) and m.detect(state)]
                if others:
                    raise type(err)(f"{err} (its keys look like the {others[0]} layout)") \
                        from None
            raise
    except PortError as err:
        if path and path not in str(err):
            raise type(err)(f"{path}: {err}") from None
        raise
    if path is not None and plan.origin is None:
        plan.origin = path
    return plan, model


def _preferred_entry(module, state, path, param_key):
    """The state_dict of the entry the detected format prefers (`PARAM_KEYS`, e.g.
    Real-ESRGAN's "params_ema"), where the file has it and was read from another."""
    from sisr.port import formats

    entries = getattr(state, "entries", ())
    prefer = [k for k in getattr(module, "PARAM_KEYS", ()) if k in entries]
    if path is None or param_key is not None or not prefer or state.entry == prefer[0]:
        return state
    return formats.reader(module)(path)


def _same_reader(a, b):
    return hasattr(a, "read") == hasattr(b, "read") and getattr(a, "read", None) is \
        getattr(b, "read", None)


def port(checkpoint, source="auto", scale=None, model=None, profile=None, img_range=255.0,
         **builder_args):
    """Builds the sisr model of a checkpoint and loads its weights.

    Args:
        checkpoint: a state_dict (a mapping of key -> array, see `load_state_dict`), or a
            file: a state_dict file, or a .h5 file of the original Keras project.
        source: a format name ("edsr-pytorch", "wdsr", "basicsr-edsr", "krasserm", ...,
            `sources()`), an alias ("edsr", "basicsr", "wdsr-a", "wdsr-b"), or "auto"
            (from the key set).
        scale: if given, must equal the scale of the checkpoint's upsampler.
        model: if given (a registered model name), must be the checkpoint's model.
        profile: a training profile name or JSON path (see `load_profile`) whose model
            and builder arguments are checked, and whose `res_block_scaling` is used.
        img_range: BasicSR's `img_range` (255 in its EDSR configs; not in the file).
        **builder_args: builder arguments: checked if the checkpoint shows them
            (`num_filters`, `num_res_blocks`, ...), else used to build (`res_block_scaling`,
            which no state_dict stores: if neither given nor in the profile, assumed 0.1
            for full EDSR, 256 filters and 32 blocks, else none; the log says which).

    Returns:
        An `SRModel` whose outputs equal the original model's (on the [0, 255] scale).

    Raises:
        PortError: a missing, extra or wrong-shaped key, an unknown or ambiguous layout,
            an unsupported configuration, or a mismatch with the requested architecture
            (naming the keys).
        TypeError: an argument that no registered builder has.
    """
    return port_checkpoint(checkpoint, source=source, scale=scale, model=model,
                           profile=profile, img_range=img_range, **builder_args).model


def port_checkpoint(checkpoint, source="auto", scale=None, model=None, profile=None,
                    img_range=255.0, param_key=None, **builder_args):
    """`port`, returning a `Ported`: the model, its plan, and the residual scaling used and
    why. `param_key` picks the entry of a wrapped checkpoint file (see `load_state_dict`)."""
    from sisr.port.pipeline import run

    unknown = sorted(set(builder_args) - builder_arguments())
    if unknown:
        raise TypeError(f"port: unknown argument(s) {', '.join(unknown)}")
    plan, source_model = _describe(checkpoint, source, {"img_range": img_range}, param_key)
    requested = dict(builder_args)
    if scale is not None:
        requested["scale"] = scale
    return run(plan, requested=requested,
               model=model if model is not None else source_model, profile=profile)
