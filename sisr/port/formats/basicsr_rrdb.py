"""BasicSR RRDBNet (XPixelGroup/BasicSR, basicsr/archs/rrdbnet_arch.py) state_dicts: ESRGAN
and Real-ESRGAN's RealESRGAN_x4plus / RealESRNet_x4plus / RealESRGAN_x2plus.

Keys: `conv_first`, `body.{i}.rdb{1,2,3}.conv{1..5}`, `conv_body`, `conv_up1`, `conv_up2`,
`conv_hr`, `conv_last`. `conv_first` has 3 input channels at x4 and 12 at x2 (the input
pixel-unshuffled by 2, in PyTorch's channel order, which the port permutes to sisr's
`PixelUnshuffle` order). The network works on [0, 1] as sisr's model does inside, so
weights are copied unscaled. Real-ESRGAN files keep the EMA weights as `params_ema`, which
is preferred (`--param-key params` for the others).
"""

import dataclasses

from sisr.model.rrdbnet import UNSHUFFLE
from sisr.port.plan import Plan, PortError
from sisr.port.rules import (
    ConvFill, conv_key_set, conv_params, conv_shape, indices, require, require_contiguous,
    shuffle_permutation, to_keras,
)

NAME = "basicsr-rrdb"
ALIASES = {"realesrgan": None, "real-esrgan": None, "basicsr-esrgan": None}
PARAM_KEYS = ("params_ema", "params")


@dataclasses.dataclass(frozen=True)
class RrdbLayout:
    """Where one code base keeps RRDBNet's convs."""

    name: str
    head: str
    conv: str  # the key prefix of conv k of dense block j of RRDB i: {i}, {j}, {k}
    pattern: str  # finds the RRDB indices
    body: str
    up1: str
    up2: str
    hr: str
    tail: str


LAYOUT = RrdbLayout("BasicSR RRDBNet", "conv_first", "body.{i}.rdb{j}.conv{k}",
                    r"body\.(\d+)\.rdb", "conv_body", "conv_up1", "conv_up2", "conv_hr",
                    "conv_last")


@dataclasses.dataclass
class UnshuffledConvFill(ConvFill):
    """A conv reading a pixel-unshuffled input: its input channels permuted from
    PyTorch's `pixel_unshuffle` order (c*r*r + i*r + j) to `space_to_depth`'s
    ((i*r + j)*C + c)."""

    unshuffle: int = 1

    def arrays(self):
        weight, bias = conv_params(self.state_dict, self.prefix)
        if self.unshuffle > 1:
            weight = weight[:, shuffle_permutation(weight.shape[1], self.unshuffle)]
        return list(to_keras(weight, bias))


def _prefixes(layout, blocks):
    prefixes = [layout.head, layout.body, layout.up1, layout.up2, layout.hr, layout.tail]
    return prefixes + [layout.conv.format(i=i, j=j, k=k)
                       for i in range(blocks) for j in (1, 2, 3) for k in range(1, 6)]


def rrdb_keys(state_dict, layout):
    """The keys of an RRDBNet in `layout` with as many RRDBs as `state_dict` shows."""
    blocks = len(indices(state_dict, layout.pattern))
    return set().union(*(conv_key_set(state_dict, p) for p in _prefixes(layout, blocks)))


def describe_rrdb(state_dict, layout, source, scales=(4, 2)):
    """The `Plan` of an RRDBNet state_dict in a code base's `layout`."""
    require(state_dict, layout.head, layout.name)
    head = conv_shape(state_dict, layout.head)
    num_feat, in_ch = head[:2]
    by_channels = {3 * UNSHUFFLE[s] ** 2: s for s in scales}
    if in_ch not in by_channels or head[2:] != (3, 3):
        known = ", ".join(f"{c} (x{s})" for c, s in by_channels.items())
        raise PortError(f"{layout.head}.weight has shape {head}: {layout.name} RGB input "
                        f"channels are {known}")
    scale = by_channels[in_ch]
    blocks = indices(state_dict, layout.pattern)
    if not blocks:
        raise PortError(f"{layout.name} state_dict without RRDBs (no key "
                        f"{layout.conv.format(i=0, j=1, k=1)}.weight)")
    require_contiguous(blocks, f"{layout.name} trunk", layout.conv.format(i="N", j="*", k="*"))
    first = layout.conv.format(i=0, j=1, k=1)
    num_grow_ch = conv_shape(state_dict, first)[0]
    for prefix in (layout.tail,):
        shape = conv_shape(state_dict, prefix)
        if shape[0] != 3:
            raise PortError(f"{prefix}.weight has shape {shape}: sisr models are RGB, "
                            "expected 3 output channels")

    def fill(prefix, layer):
        return ConvFill.of(state_dict, prefix, layer)

    head_layer = "head_conv" if UNSHUFFLE[scale] == 1 else f"head_x{scale}_conv"
    fills = [UnshuffledConvFill.of(state_dict, layout.head, head_layer)]
    fills[0].unshuffle = UNSHUFFLE[scale]
    for i in range(len(blocks)):
        fills += [fill(layout.conv.format(i=i, j=j, k=k), f"block{i + 1}_rdb{j}_conv{k}")
                  for j in (1, 2, 3) for k in range(1, 6)]
    fills += [fill(layout.body, "body_conv"), fill(layout.up1, "upsample_conv1"),
              fill(layout.up2, "upsample_conv2"), fill(layout.hr, "hr_conv"),
              fill(layout.tail, "output_conv")]
    args = {"scale": scale, "num_feat": num_feat, "num_block": len(blocks),
            "num_grow_ch": num_grow_ch}
    unshuffled = f", the RGB input pixel-unshuffled by {UNSHUFFLE[scale]}" \
        if UNSHUFFLE[scale] > 1 else ""
    evidence = {
        "scale": f"the state_dict has {scale} ({layout.head}.weight {head}: {in_ch} input "
                 f"channels{unshuffled})",
        "num_feat": f"the state_dict has {num_feat} ({layout.head}.weight {head})",
        "num_block": f"the state_dict has {len(blocks)} (keys "
                     + layout.conv.format(i=f"0..{len(blocks) - 1}", j="*", k="*") + ")",
        "num_grow_ch": f"the state_dict has {num_grow_ch} ({first}.weight "
                       f"{conv_shape(state_dict, first)})",
    }
    return Plan(source, "rrdbnet", args, fills, keys=tuple(state_dict), evidence=evidence)


def expected_keys(state_dict):
    """The keys of a BasicSR RRDBNet as large as `state_dict` looks."""
    return rrdb_keys(state_dict, LAYOUT)


def detect(state_dict):
    """True if the key set is exactly a BasicSR RRDBNet's (`conv_first` is every BasicSR
    network's; `body.N.rdbJ.convK` and `conv_up1` are RRDBNet's)."""
    return bool(indices(state_dict, LAYOUT.pattern)) and \
        set(state_dict) == expected_keys(state_dict)


def describe(state_dict, **options):
    """The `Plan` of a BasicSR RRDBNet state_dict."""
    return describe_rrdb(state_dict, LAYOUT, NAME)

