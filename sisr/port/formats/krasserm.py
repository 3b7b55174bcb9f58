"""Model files of the original Keras project (krasserm/super-resolution): `.h5` weights
files of the TF2 era and full-model files of the Keras-2 era (see `sisr.port.krasserm`).

The file is read as data (`read`): its layers with weights, in the stored order, and
its JSON config, never deserialised. `detect` and `describe` walk that layer list
(`sisr.port.krasserm_layouts`) and check the JSON (`sisr.port.krasserm_config`).
"""

import dataclasses

from sisr.port.krasserm_layouts import LAYOUTS, KrassermError
from sisr.port.krasserm_layouts import detect as _layout
from sisr.port.plan import Fill, Plan

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


WEIGHTS = {"conv": ("kernel", "bias"), "dense": ("kernel", "bias"), "prelu": ("alpha",),
           "bn": ("gamma", "beta", "moving_mean", "moving_variance")}


@dataclasses.dataclass
class LayerFill(Fill):
    """The weights of one stored layer: their declared shapes are known before the file's
    weights are read (on the first `arrays()` call)."""

    file: object = None
    source: object = None

    def shapes(self):
        # a weight-normalised kernel folds to the shape of its stored v
        return [tuple(self.source.arrays[k].shape) for k in WEIGHTS[self.source.kind]]

    def arrays(self):
        values = self.file.values(self.source)
        return [values[k] for k in WEIGHTS[self.source.kind]]


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
    fills = [LayerFill(target, (layer.name,), layer.describe(), file=file, source=layer)
             for target, layer in walk.assign]
    return Plan(NAME, walk.model, args, fills, keys=tuple(file.keys()), evidence=evidence,
                notes=list(walk.notes), kind=walk.kind, holder="file", origin=file.path,
                error=KrassermError)
