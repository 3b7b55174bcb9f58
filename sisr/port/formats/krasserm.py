"""Model files of the original Keras project (krasserm/super-resolution): `.h5` weights
files of the TF2 era and full-model files of the Keras-2 era (see `sisr.port.krasserm`).

The file is read as data (`read`): its layers with weights, in the stored order, and
its JSON config, never deserialised. `detect` and `describe` walk that layer list
(`sisr.port.krasserm_layouts`) and check the JSON (`sisr.port.krasserm_config`).
"""

from sisr.port.krasserm_layouts import LAYOUTS, KrassermError
from sisr.port.krasserm_layouts import detect as _layout
from sisr.port.plan import ArrayFill, Plan

NAME = "krasserm"
ALIASES = {}


def sniff(path):
    """True for an HDF5 file: the only kind this format reads."""
    import h5py

    return h5py.is_hdf5(path)


def read(path, **options):
    """A `sisr.port.krasserm.KrassermFile` of `path` (layers and JSON config)."""
    from sisr.port.krasserm import read_file

    return read_file(path)


def _walk(file):
    try:
        return LAYOUTS[_layout(file.layers)](file.layers)
    except KrassermError as err:
        raise KrassermError(f"{file.path}: {err}") from None


def detect(file):
    """True if the file's layers are those of a krasserm model sisr has."""
    try:
        _walk(file)
    except KrassermError:
        return False
    return True


def _weights_of(layer):
    if layer.kind in ("conv", "dense"):
        return [layer.kernel, layer.arrays["bias"]]
    if layer.kind == "bn":
        return [layer.arrays[k] for k in ("gamma", "beta", "moving_mean", "moving_variance")]
    return [layer.arrays["alpha"]]


def describe(file, **options):
    """The `Plan` of a krasserm file: what its layers (and JSON config) show."""
    from sisr.port.krasserm_config import check_full_model

    walk = _walk(file)
    if file.config is not None:
        walk.kind = "full model"
        check_full_model(walk, file.layers, file.config, file.path)
    args = dict(walk.args)
    evidence = {"model": f"the file holds {walk.model}"}
    if "scale" in args:
        evidence["scale"] = f"the file's upsampler is x{args['scale']}"
    if walk.scaling is not None:
        args["res_block_scaling"] = walk.scaling
        evidence["res_block_scaling"] = f"the file's Lambda layers scale by {walk.scaling!r}"
    if walk.tanh_output:  # the 2018 EDSR generator (edsr-16-x4-gen)
        args["output_activation"] = "tanh"
        evidence["output_activation"] = "the file's output conv is followed by tanh"
    fills = [ArrayFill(target, (layer.name,), layer.describe(), values=_weights_of(layer))
             for target, layer in walk.assign]
    return Plan(NAME, walk.model, args, fills, keys=tuple(file.keys()), evidence=evidence,
                notes=list(walk.notes), kind=walk.kind, holder="file", origin=file.path,
                error=KrassermError)
