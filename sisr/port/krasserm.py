"""Model files of the original Keras project (krasserm/super-resolution, Apache-2.0).

    from sisr.port.krasserm import load_krasserm
    model = load_krasserm("weights/srgan/pre_generator.h5")    # a sisr SRResNet x4

    python -m sisr.port --from krasserm weights.h5 [--profile edsr-16 --scale 4] -o out.keras

Two generations of files are read, both HDF5:

- TF2 era (2019-): `model.save_weights(...)` files of EDSR, WDSR-A/B (every conv wrapped
  in tensorflow-addons' `WeightNormalization`), the SRResNet/SRGAN generator and the SRGAN
  discriminator. They hold weights only, in the order of the model's layers; the
  architecture is read from the weight shapes, the residual scaling (not stored) from the
  arguments or profile. `tf.keras` full-model saves of the same code are read too.
- Keras-2 era (2018): `model.save(...)` files with a JSON `model_config` and
  `model_weights` (EDSR, the tanh EDSR generator `edsr-16-x4-gen`, WDSR-A/B, SRResNet).
  The JSON is parsed as data: its `Lambda` layers (normalisation, pixel shuffle, padding)
  are recognised by their position and never deserialised or run.

Hostile files are refused before anything is read (`krasserm_h5`, `krasserm_schema`):
objects are reached through hard links only, weights must be float arrays stored in the
file whose declared shapes fit the layout and the sisr layers (checked by the pipeline
before `KrassermFile.values` reads them), the declared total is bounded, and the JSON is
checked against a schema of what the reader uses, with a depth bound.

The format module `sisr.port.formats.krasserm` walks the layers (`krasserm_layouts`)
and checks a full model's JSON (`krasserm_config`); `sisr.port.pipeline` builds and fills
the sisr model, as for every checkpoint.

Conversion: Keras kernels are already HWIO and both code bases use channels-last
`depth_to_space`, so kernels are copied; weight normalisation is folded
(`kernel = g * v / ||v||`, the norm over all axes but the output one, as tfa's
`l2_normalize`); normalisation is the same as sisr's (DIV2K mean / 127.5 for EDSR/WDSR,
[0, 1] in / tanh [-1, 1] out for SRResNet, [-1, 1] for the discriminator), so no bias
changes. Every stored weight is used and every sisr weight is filled, or a `PortError`
names the layer that does not fit.
"""

import dataclasses
import os

import numpy as np

from sisr.errors import SisrError
from sisr.port import krasserm_h5 as h5
from sisr.port.io import CheckpointError
from sisr.port.krasserm_layouts import FileLayer, KrassermError
from sisr.port.krasserm_schema import parse_model_config

__all__ = ["KrassermError", "KrassermFile", "describe_krasserm", "load_krasserm",
           "read_krasserm"]

# tf.nn.l2_normalize's epsilon on the squared norm.
L2_EPSILON = 1e-12


# ----------------------------------------------------------------------------- reading


def _short(weight_name):
    """`conv2d_3/kernel:0` -> `kernel`."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _read_group(group, path):
    """The layers with weights of a Keras HDF5 weights group, in the stored order, as
    (name, {short name: StoredArray}): shapes and types checked, nothing read."""
    names = h5.string_list(group.attrs, "layer_names", path, "the weights group")
    if names is None:
        raise CheckpointError(f"{path}: not a Keras weights file (no layer_names)")
    layers, seen = [], set()
    for name in names:
        if name in seen:
            raise CheckpointError(f"{path}: layer {name!r} is listed twice in layer_names")
        seen.add(name)
        sub = h5.group_at(group, name, path, f"the group of layer {name!r}")
        if sub is None:
            raise CheckpointError(f"{path}: layer {name!r} is listed but has no group")
        weights = h5.string_list(sub.attrs, "weight_names", path, f"layer {name!r}") or []
        arrays = {}
        for weight in weights:
            what = f"weight {weight!r} of layer {name!r}"
            key = _short(weight)
            if key in arrays:
                raise KrassermError(f"{path}: layer {name!r} has two weights called {key!r}")
            array = h5.array_at(sub, weight, path, what, flag=key == "initialized")
            if array is None:
                raise CheckpointError(f"{path}: {what} is missing")
            arrays[key] = array
        if arrays:
            layers.append((name, arrays))
    return layers


def _classify(name, arrays, path):
    """A FileLayer of stored (not yet read) arrays, from their names and shapes."""
    keys = set(arrays)
    if keys == {"kernel", "bias"}:
        ndim = arrays["kernel"].ndim
        if ndim not in (2, 4):
            raise KrassermError(f"{path}: layer {name!r} has a kernel of rank {ndim}")
        return FileLayer(name, "conv" if ndim == 4 else "dense", arrays)
    if keys == {"gamma", "beta", "moving_mean", "moving_variance"}:
        return FileLayer(name, "bn", arrays)
    if keys == {"alpha"}:
        return FileLayer(name, "prelu", arrays)
    if keys == {"g", "kernel", "bias", "initialized"}:
        v, g = arrays["kernel"], arrays["g"]
        if v.ndim != 4 or g.shape != (v.shape[-1],):
            raise KrassermError(f"{path}: weight-normalised layer {name!r} has g {g.shape} "
                                f"and kernel {v.shape}; expected g of shape "
                                f"({v.shape[-1] if v.ndim else '?'},) and a 4-d conv kernel")
        return FileLayer(name, "conv", arrays, weight_norm=True)
    raise KrassermError(f"{path}: layer {name!r} has weights {sorted(keys)}, which are not "
                        "those of a Conv2D, Dense, BatchNormalization, PReLU or tfa "
                        "WeightNormalization(Conv2D) layer")


def _convert(layer, raw):
    """The float32 weights of a FileLayer from its stored values; weight norm folded."""
    if not layer.weight_norm:
        return {k: np.asarray(v, dtype=np.float32) for k, v in raw.items()}
    return {"kernel": _fold_weight_norm(raw), "bias": raw["bias"].astype(np.float32)}


def _fold_weight_norm(arrays):
    """tfa WeightNormalization: kernel = l2_normalize(v, all axes but the last) * g.

    A wrapper that never ran (`initialized` False) sets g = ||v|| on its first call
    (data_init=False, as krasserm's code), so its kernel is v itself.
    """
    v = arrays["kernel"].astype(np.float64)
    g = arrays["g"].astype(np.float64)
    if not bool(np.asarray(arrays["initialized"]).reshape(-1)[0]):
        return v.astype(np.float32)
    norm = np.sqrt(np.maximum(np.sum(v * v, axis=(0, 1, 2)), L2_EPSILON))
    return (v / norm * g).astype(np.float32)


@dataclasses.dataclass
class KrassermFile:
    """What a krasserm .h5 file holds: its layers with weights, in the stored order (their
    arrays checked but not read: `values` reads them), and its parsed JSON `model_config`
    (None for a weights file)."""

    path: str
    layers: list
    config: dict = None
    _values: dict = dataclasses.field(default=None, repr=False)

    def keys(self):
        return [layer.name for layer in self.layers]

    def values(self, layer):
        """The float32 weights of one of the file's layers by short name (the file is read
        once, on the first call, after every shape was checked)."""
        if self._values is None:
            self._values = _read_values(self.path, self.layers)
        return self._values[layer.name]


def _h5_errors():
    return (OSError, RuntimeError, KeyError, ValueError, TypeError)


def _read_values(path, layers):
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return {layer.name: _convert(layer, {k: h5.read(f, a, path)
                                                 for k, a in layer.arrays.items()})
                    for layer in layers}
    except SisrError:
        raise
    except _h5_errors() as err:
        raise CheckpointError(f"{path}: cannot read the weights: {_one_line(err)}") from None


def _one_line(err):
    return " ".join(str(err).split()) or type(err).__name__


def read_file(path):
    """Reads a krasserm .h5 file into a `KrassermFile` (the JSON is parsed, not run;
    the weights are checked, read later by `KrassermFile.values`)."""
    layers, config = _read_structure(path)
    return KrassermFile(os.fspath(path), layers, config)


def read_krasserm(path):
    """Reads a krasserm .h5 file: (layers with their float32 weights, parsed JSON config
    or None)."""
    file = read_file(path)
    for layer in file.layers:
        layer.arrays = file.values(layer)
    return file.layers, file.config


def _read_structure(path):
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if not h5py.is_hdf5(path):
        raise CheckpointError(f"{path}: not an HDF5 file (expected a Keras .h5 model or "
                              "weights file)")
    try:
        with h5py.File(path, "r") as f:
            raw, config = _structure(f, path)
    except SisrError:
        raise
    except RecursionError:
        raise CheckpointError(f"{path}: the file nests too deeply to be read") from None
    except _h5_errors() as err:
        raise CheckpointError(f"{path}: cannot read the HDF5 file: {_one_line(err)}") \
            from None
    if not raw:
        raise CheckpointError(f"{path}: the file holds no weights")
    h5.check_total([a for _, arrays in raw for a in arrays.values()], path)
    return [_classify(name, arrays, path) for name, arrays in raw], config


def _structure(f, path):
    config = None
    group = f
    text = h5.string_attribute(f.attrs, "model_config", path)
    if text is not None:
        config = parse_model_config(text, path)
        group = h5.group_at(f, "model_weights", path, "model_weights")
        if group is None:
            raise CheckpointError(f"{path}: a full-model file without model_weights")
    raw = _read_group(group, path)
    top = h5.group_at(group, "top_level_model_weights", path, "top_level_model_weights")
    if top is not None and h5.string_list(top.attrs, "weight_names", path,
                                          "top_level_model_weights"):
        raise KrassermError(f"{path}: the model has weights of its own "
                            "(top_level_model_weights), not those of a krasserm model")
    return raw, config


# ----------------------------------------------------------------------------- the port


def describe_krasserm(path):
    """The `Plan` of a krasserm file: sisr model, builder arguments, layer mapping."""
    from sisr.port import describe

    return describe(path, source="krasserm")


def load_krasserm(path, profile=None, scale=None, model=None, **builder_args):
    """Builds the sisr model of a krasserm/super-resolution .h5 file and loads its weights.

    `sisr.port.port(path, source="krasserm", ...)`.

    Args:
        path: a TF2-era `save_weights` .h5 file or a Keras-2-era full-model .h5 file.
        profile: a training profile name or JSON path (see `load_profile`) whose model
            and builder arguments are checked against the file, and whose
            `res_block_scaling` is used (weights files do not store it).
        scale: if given, must be the scale of the file's upsampler.
        model: if given ("edsr", "wdsr_a", "wdsr_b", "srresnet", "discriminator"), must
            be the file's model.
        **builder_args: builder arguments to check (`num_filters`, `num_res_blocks`,
            `res_block_expansion`, `hr_size`), or to build with if the file does not
            store them (`res_block_scaling`; default none).

    Returns:
        A sisr `SRModel` with the original model's outputs, RGB on [0, 255].

    Raises:
        FileNotFoundError: `path` does not exist.
        CheckpointError: the file is not a Keras HDF5 model or weights file.
        KrassermError (a PortError): a layer that fits no sisr model, a missing or extra
            layer, or a mismatch with the requested architecture.
    """
    from sisr.port import port

    return port(os.fspath(path), source="krasserm", profile=profile, scale=scale,
                model=model, **builder_args)
