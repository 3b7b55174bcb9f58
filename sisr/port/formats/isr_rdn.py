"""idealo ISR's RDN weights (idealo/image-super-resolution, ISR/models/rdn.py, Apache-2.0):
the Keras `.hdf5` files of `RDN(weights="psnr-large" / "psnr-small" / "noise-cancel")`.

Read as data (the HDF5 reader of `sisr.port.krasserm`: hard links only, shapes checked
before anything is read, no model code run). Layers by name: `F_m1`, `F_0`, block d conv c
`F_{d}_{c}`, local fusion `LFF_{d}`, `GFF_1`, `GFF_2`, the upsampler `UPN1` (5x5, 64),
`UPN2` (3x3, 32), `UPN3` (3x3, 3 r^2) and `SR` (3x3 to RGB). `SR` has 3 r^2 inputs behind
ISR's "ups" upsampling (nearest neighbour; the published weights) or 3 behind its pixel
shuffle (TensorFlow's `depth_to_space`, sisr's channel order: no permutation).

ISR feeds images on [0, 1] and reads its output on [0, 1], with no mean: the network is
positively homogeneous (convs, ReLUs, concatenations, adds, upsampling), so on sisr's
[0, 255] scale the kernels stay and every bias is multiplied by 255.
"""

import dataclasses
import re

# The same reader as krasserm's files (`sniff`, `read`): the port tries both layouts on one
# reading of an HDF5 file.
from sisr.port.formats.krasserm import read, sniff  # noqa: F401
from sisr.port.plan import Fill, Plan, PortError

NAME = "isr-rdn"
ALIASES = {"isr": None}
INPUT_RANGE = 255.0  # ISR's images are x / 255
BLOCK_CONV = re.compile(r"F_(\d+)_(\d+)$")
FIXED = ("F_m1", "F_0", "GFF_1", "GFF_2", "UPN1", "UPN2", "UPN3", "SR")


def _layers(file):
    layers = getattr(file, "layers", None)
    if layers is None:
        raise PortError("not an ISR RDN weights file (no layers)")
    return {layer.name: layer for layer in layers}


def _sizes(names):
    convs = [BLOCK_CONV.match(n) for n in names]
    convs = [(int(m.group(1)), int(m.group(2))) for m in convs if m]
    blocks = sorted({d for d, _ in convs})
    layers = sorted({c for d, c in convs if d == 1})
    return blocks, layers


def expected_keys(file):
    """The layer names of an ISR RDN as large as `file` looks."""
    names = set(_layers(file))
    blocks, layers = _sizes(names)
    expected = set(FIXED)
    for d in blocks:
        expected |= {f"F_{d}_{c}" for c in layers} | {f"LFF_{d}"}
    return expected


def detect(file):
    """True if the file's layers are exactly an ISR RDN's."""
    try:
        return set(_layers(file)) == expected_keys(file)
    except PortError:
        return False


@dataclasses.dataclass
class IsrFill(Fill):
    """One stored Keras conv (HWIO already), its bias on sisr's [0, 255] scale."""

    file: object = None
    source: object = None

    def shapes(self):
        return [tuple(self.source.arrays[k].shape) for k in ("kernel", "bias")]

    def arrays(self):
        values = self.file.values(self.source)
        return [values["kernel"], values["bias"] * INPUT_RANGE]


def describe(file, **options):
    """The `Plan` of an ISR RDN weights file."""
    layers = _layers(file)
    missing = sorted(expected_keys(file) - set(layers))
    if missing:
        raise PortError(f"not an ISR RDN weights file: no layer(s) {', '.join(missing)}")
    for name, layer in layers.items():
        if layer.kind != "conv" or layer.weight_norm:
            raise PortError(f"layer {name!r} is not a plain Conv2D ({layer.describe()})")
    blocks, convs = _sizes(layers)
    if not blocks or blocks != list(range(1, len(blocks) + 1)) or \
            convs != list(range(1, len(convs) + 1)):
        raise PortError(f"ISR RDN blocks F_d_c must be numbered from 1: blocks {blocks}, "
                        f"convs {convs}")
    num_filters = layers["F_m1"].cout
    growth_rate = layers["F_1_1"].cout
    up3, sr = layers["UPN3"], layers["SR"]
    scale = int(round((up3.cout / 3) ** 0.5))
    if scale < 2 or 3 * scale * scale != up3.cout:
        raise PortError(f"layer 'UPN3' has {up3.cout} outputs: expected 3 r^2 for a scale r")
    if sr.cin == up3.cout:
        upsampler, tail = "isr", f"output_x{scale}_conv"
    elif sr.cin == 3:
        upsampler, tail = "isr-shuffle", "output_conv"
    else:
        raise PortError(f"layer 'SR' has {sr.cin} inputs: expected {up3.cout} (ISR's "
                        "nearest-neighbour upsampling) or 3 (its pixel shuffle)")
    targets = {"F_m1": "head_conv", "F_0": "head_conv2", "GFF_1": "fusion_conv1",
               "GFF_2": "fusion_conv2", "SR": tail}
    targets.update({f"UPN{k}": f"upsample_x{scale}_conv{k}" for k in (1, 2, 3)})
    for d in blocks:
        targets.update({f"F_{d}_{c}": f"block{d}_conv{c}" for c in convs})
        targets[f"LFF_{d}"] = f"block{d}_fusion"
    fills = [IsrFill(target, (name,), layers[name].describe(), file=file,
                     source=layers[name]) for name, target in targets.items()]
    args = {"scale": scale, "num_blocks": len(blocks), "num_layers": len(convs),
            "growth_rate": growth_rate, "num_filters": num_filters, "upsampler": upsampler}
    evidence = {
        "model": "the file holds ISR's RDN (layers F_m1, F_d_c, LFF_d, GFF, UPN, SR)",
        "scale": f"the file has {scale} (UPN3 has {up3.cout} = 3 x {scale}^2 outputs)",
        "num_blocks": f"the file has {len(blocks)} (LFF_1..{len(blocks)})",
        "num_layers": f"the file has {len(convs)} (F_1_1..F_1_{len(convs)})",
        "growth_rate": f"the file has {growth_rate} (F_1_1 has {growth_rate} outputs)",
        "num_filters": f"the file has {num_filters} (F_m1 has {num_filters} outputs)",
        "upsampler": f"the file has {upsampler!r} (SR has {sr.cin} inputs)",
    }
    return Plan(NAME, "rdn", args, fills, keys=tuple(file.keys()), evidence=evidence,
                kind="weights", holder="file", origin=getattr(file, "path", None))
