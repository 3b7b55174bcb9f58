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
import json
import os

import numpy as np

from sisr.port.io import CheckpointError
from sisr.port.krasserm_layouts import FileLayer, KrassermError

__all__ = ["KrassermError", "KrassermFile", "describe_krasserm", "load_krasserm",
           "read_krasserm"]

# tf.nn.l2_normalize's epsilon on the squared norm.
L2_EPSILON = 1e-12


# ----------------------------------------------------------------------------- reading


def _decode(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _short(weight_name):
    """`conv2d_3/kernel:0` -> `kernel`."""
    return _decode(weight_name).rsplit("/", 1)[-1].split(":", 1)[0]


def _read_group(group, path):
    """The layers with weights of a Keras HDF5 weights group, in the stored order."""
    if "layer_names" not in group.attrs:
        raise CheckpointError(f"{path}: not a Keras weights file (no layer_names)")
    layers = []
    for raw in group.attrs["layer_names"]:
        name = _decode(raw)
        if name not in group:
            raise CheckpointError(f"{path}: layer {name!r} is listed but has no group")
        sub = group[name]
        names = [_decode(w) for w in sub.attrs.get("weight_names", [])]
        if not names:
            continue
        arrays = {}
        for weight in names:
            if weight not in sub:
                raise CheckpointError(f"{path}: weight {weight!r} of layer {name!r} is missing")
            key = _short(weight)
            if key in arrays:
                raise KrassermError(f"{path}: layer {name!r} has two weights called {key!r}")
            arrays[key] = np.asarray(sub[weight][()])
        layers.append((name, arrays))
    return layers


def _classify(name, arrays, path):
    """A FileLayer from stored arrays; weight normalisation folded into the kernel."""
    keys = set(arrays)
    if keys == {"kernel", "bias"}:
        ndim = arrays["kernel"].ndim
        if ndim not in (2, 4):
            raise KrassermError(f"{path}: layer {name!r} has a kernel of rank {ndim}")
        kind = "conv" if ndim == 4 else "dense"
        return FileLayer(name, kind, {k: arrays[k].astype(np.float32) for k in ("kernel", "bias")})
    if keys == {"gamma", "beta", "moving_mean", "moving_variance"}:
        order = ("gamma", "beta", "moving_mean", "moving_variance")
        return FileLayer(name, "bn", {k: arrays[k].astype(np.float32) for k in order})
    if keys == {"alpha"}:
        return FileLayer(name, "prelu", {"alpha": arrays["alpha"].astype(np.float32)})
    if keys == {"g", "kernel", "bias", "initialized"}:
        kernel = _fold_weight_norm(name, arrays, path)
        bias = arrays["bias"].astype(np.float32)
        return FileLayer(name, "conv", {"kernel": kernel, "bias": bias}, weight_norm=True)
    raise KrassermError(f"{path}: layer {name!r} has weights {sorted(keys)}, which are not "
                        "those of a Conv2D, Dense, BatchNormalization, PReLU or tfa "
                        "WeightNormalization(Conv2D) layer")


def _fold_weight_norm(name, arrays, path):
    """tfa WeightNormalization: kernel = l2_normalize(v, all axes but the last) * g.

    A wrapper that never ran (`initialized` False) sets g = ||v|| on its first call
    (data_init=False, as krasserm's code), so its kernel is v itself.
    """
    v = arrays["kernel"].astype(np.float64)
    g = arrays["g"].astype(np.float64)
    if v.ndim != 4 or g.shape != (v.shape[-1],):
        raise KrassermError(f"{path}: weight-normalised layer {name!r} has g {g.shape} and "
                            f"kernel {v.shape}; expected g of shape ({v.shape[-1]},) and a "
                            "4-d conv kernel")
    if not bool(np.asarray(arrays["initialized"])):
        return v.astype(np.float32)
    norm = np.sqrt(np.maximum(np.sum(v * v, axis=(0, 1, 2)), L2_EPSILON))
    return (v / norm * g).astype(np.float32)


@dataclasses.dataclass
class KrassermFile:
    """What a krasserm .h5 file holds: its layers with weights, in the stored order, and
    its parsed JSON `model_config` (None for a weights file)."""

    path: str
    layers: list
    config: dict = None

    def keys(self):
        return [layer.name for layer in self.layers]


def read_file(path):
    """Reads a krasserm .h5 file into a `KrassermFile` (the JSON is parsed, not run)."""
    layers, config = read_krasserm(path)
    return KrassermFile(os.fspath(path), layers, config)


def read_krasserm(path):
    """Reads a krasserm .h5 file: (layers with weights, parsed JSON config or None)."""
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if not h5py.is_hdf5(path):
        raise CheckpointError(f"{path}: not an HDF5 file (expected a Keras .h5 model or "
                              "weights file)")
    with h5py.File(path, "r") as f:
        config = None
        group = f
        if "model_config" in f.attrs:
            try:
                config = json.loads(_decode(f.attrs["model_config"]))
            except json.JSONDecodeError as err:
                raise CheckpointError(f"{path}: model_config is not valid JSON: {err}") from None
            if "model_weights" not in f:
                raise CheckpointError(f"{path}: a full-model file without model_weights")
            group = f["model_weights"]
        raw = _read_group(group, path)
        extra = [k for k in group if k == "top_level_model_weights"
                 and group[k].attrs.get("weight_names") is not None
                 and len(group[k].attrs["weight_names"])]
        if extra:
            raise KrassermError(f"{path}: the model has weights of its own "
                                "(top_level_model_weights), not those of a krasserm model")
    if not raw:
        raise CheckpointError(f"{path}: the file holds no weights")
    return [_classify(name, arrays, path) for name, arrays in raw], config


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
