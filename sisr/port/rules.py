"""PyTorch conventions shared by the state_dict formats, and the EDSR key structure.

Conversion of one PyTorch conv to a Keras Conv2D: OIHW -> HWIO kernels, weight norm
(legacy `weight_g`/`weight_v` or `parametrizations.weight.original0/1`) folded into the
kernel, the output channels of a conv feeding a PixelShuffle permuted from PyTorch's order
to TensorFlow's `depth_to_space` order, biases scaled for a normalisation difference
(`ConvFill`). EDSR-PyTorch and BasicSR keep EDSR's convs under different names
(`EdsrLayout`); `describe_edsr` and `edsr_keys` read either.
"""

import dataclasses
import re

import numpy as np

from sisr.model.common import UPSAMPLE_STAGES
from sisr.port.plan import Fill, PortError

__all__ = ["FULL_EDSR", "FULL_EDSR_SCALING", "ConvFill", "EdsrLayout", "PortError",
           "conv_key_set", "conv_keys", "conv_params", "conv_shape", "describe_edsr",
           "edsr_keys", "full_edsr_scaling", "indices", "require", "require_contiguous",
           "rgb_conv", "shuffle_permutation", "to_keras", "upsampler"]

# Published full EDSR (256 filters, 32 blocks) is trained with residual scaling 0.1;
# the factor is not in the state_dict, so this configuration implies it by default.
FULL_EDSR = {"num_filters": 256, "num_res_blocks": 32}
FULL_EDSR_SCALING = 0.1
# The parameter names of a conv: plain, legacy weight norm, parametrized weight norm.
WEIGHT_FORMS = (("weight_g", "weight_v"),
                ("parametrizations.weight.original0", "parametrizations.weight.original1"),
                ("weight",))


# ---------------------------------------------------------------- conv parameters

def conv_keys(state_dict, prefix):
    """The keys of the conv `prefix`: plain, legacy weight norm, or parametrized."""
    for names in WEIGHT_FORMS:
        weight_keys = tuple(f"{prefix}.{name}" for name in names)
        if all(k in state_dict for k in weight_keys):
            return weight_keys + (f"{prefix}.bias",)
    raise PortError(
        f"missing key: no weight for the conv {prefix!r} (expected {prefix}.weight, or "
        f"{prefix}.weight_g and {prefix}.weight_v)"
    )


def conv_shape(state_dict, prefix):
    """OIHW shape of the conv `prefix` (of its weight, or of v under weight norm)."""
    weight_key = conv_keys(state_dict, prefix)[-2]
    shape = tuple(np.shape(state_dict[weight_key]))
    if len(shape) != 4:
        raise PortError(f"{weight_key} has shape {shape}, expected a 4-D OIHW conv weight")
    return shape


def conv_params(state_dict, prefix):
    """(weight OIHW float64, bias float64) of the conv `prefix`, weight norm folded.

    Weight norm (torch.nn.utils.weight_norm, dim=0): W = g * v / ||v||, with the norm
    over all axes but the output channel.
    """
    keys = conv_keys(state_dict, prefix)
    bias_key = keys[-1]
    if bias_key not in state_dict:
        raise PortError(f"missing key: {bias_key} (every conv of these models has a bias)")
    if len(keys) == 2:
        weight = np.asarray(state_dict[keys[0]], np.float64)
    else:
        g = np.asarray(state_dict[keys[0]], np.float64)
        v = np.asarray(state_dict[keys[1]], np.float64)
        if v.ndim != 4:
            raise PortError(f"{keys[1]} has shape {v.shape}, expected a 4-D OIHW conv weight")
        if g.size != v.shape[0]:
            raise PortError(f"{keys[0]} has shape {g.shape}, expected ({v.shape[0]}, 1, 1, 1) "
                            f"to match {keys[1]} {v.shape}")
        norm = np.sqrt(np.sum(v * v, axis=(1, 2, 3)))
        weight = v * (g.reshape(-1) / norm)[:, None, None, None]
    bias = np.asarray(state_dict[bias_key], np.float64)
    if bias.shape != (weight.shape[0],):
        raise PortError(f"{bias_key} has shape {bias.shape}, expected ({weight.shape[0]},) "
                        f"for a conv with {weight.shape[0]} output channels")
    return weight, bias


def shuffle_permutation(channels, r):
    """Output-channel order that makes TF's depth_to_space equal PyTorch's PixelShuffle.

    `channels` = C * r * r conv outputs. PyTorch reads channel c*r*r + i*r + j for
    output pixel offset (i, j) of channel c; depth_to_space reads (i*r + j)*C + c. So
    the TF conv's output channel (i*r + j)*C + c must be PyTorch's c*r*r + i*r + j.
    """
    if channels % (r * r):
        raise PortError(f"{channels} channels cannot feed a pixel shuffle of factor {r}")
    c = channels // (r * r)
    return np.arange(channels).reshape(c, r * r).T.reshape(-1)


def to_keras(weight, bias, shuffle=1, bias_scale=1.0):
    """OIHW weight and bias to a float32 HWIO kernel and bias, permuted for a shuffle."""
    if shuffle > 1:
        perm = shuffle_permutation(weight.shape[0], shuffle)
        weight, bias = weight[perm], bias[perm]
    kernel = weight.transpose(2, 3, 1, 0)
    return kernel.astype(np.float32), (bias * bias_scale).astype(np.float32)


# ---------------------------------------------------------------- key structure

def indices(state_dict, pattern):
    """Sorted distinct integers captured by `pattern` (one group) at the start of keys."""
    regex = re.compile(pattern)
    found = set()
    for key in state_dict:
        match = regex.match(key)
        if match:
            found.add(int(match.group(1)))
    return sorted(found)


def require_contiguous(found, what, pattern_text):
    if found != list(range(len(found))):
        missing = sorted(set(range(max(found) + 1)) - set(found))
        raise PortError(f"{what}: keys {pattern_text} are not numbered 0..{len(found) - 1}; "
                        f"missing index(es) {missing}")


def require(state_dict, prefix, source):
    if not any(k.startswith(prefix + ".") for k in state_dict):
        raise PortError(f"not an {source} state_dict: missing key(s) {prefix}.* "
                        f"(found e.g. {', '.join(sorted(state_dict)[:4])})")


def rgb_conv(state_dict, prefix, direction, kernel=3):
    shape = conv_shape(state_dict, prefix)
    channels = shape[1] if direction == "in" else shape[0]
    if channels != 3:
        raise PortError(f"{prefix} has shape {shape}: sisr models are RGB, expected 3 "
                        f"{direction}put channels")
    if shape[2:] != (kernel, kernel):
        raise PortError(f"{prefix} has shape {shape}, expected a {kernel}x{kernel} kernel")
    return shape


def upsampler(state_dict, prefix, num_filters):
    """Scale and conv keys of an EDSR upsampler: x2 stages `{prefix}.0/.2/.4`, or one x3."""
    stages = indices(state_dict, re.escape(prefix) + r"\.(\d+)\.")
    if not stages:
        raise PortError(f"missing key(s): {prefix}.0.weight (the upsampler's first conv)")
    if stages != list(range(0, 2 * len(stages), 2)):
        raise PortError(f"upsampler keys {prefix}.N: expected N = 0, 2, 4... (conv, "
                        f"PixelShuffle, conv...), found {stages}")
    keys = [f"{prefix}.{i}" for i in stages]
    factors = []
    for key in keys:
        out_ch, in_ch = conv_shape(state_dict, key)[:2]
        r = int(round((out_ch / num_filters) ** 0.5))
        if in_ch != num_filters or r < 2 or r * r * num_filters != out_ch:
            raise PortError(f"{key}.weight has shape {conv_shape(state_dict, key)}: an "
                            f"upsampler conv of {num_filters} filters has {num_filters} "
                            f"inputs and {num_filters} * r * r outputs for a stage of r")
        factors.append(r)
    scales = {stages: scale for scale, stages in UPSAMPLE_STAGES.items()}
    if tuple(factors) not in scales:
        supported = ", ".join(f"x{s} = {' x '.join(map(str, st))}"
                              for s, st in UPSAMPLE_STAGES.items())
        raise PortError(f"upsampler {', '.join(keys)} has factors {factors}: supported are "
                        f"{supported}")
    scale = scales[tuple(factors)]
    evidence = (f"{', '.join(k + '.weight' for k in keys)}: "
                + ", ".join(f"x{r}" for r in factors) + " pixel-shuffle stage(s)")
    return scale, list(zip(keys, factors)), evidence




def conv_key_set(state_dict, prefix):
    """The keys a conv `prefix` has: in the weight form the state_dict uses, else plain."""
    for names in WEIGHT_FORMS:
        keys = {f"{prefix}.{name}" for name in names}
        if keys <= set(state_dict):
            return keys | {f"{prefix}.bias"}
    return {f"{prefix}.weight", f"{prefix}.bias"}


@dataclasses.dataclass
class ConvFill(Fill):
    """A PyTorch conv `prefix` of `state_dict` into a sisr Conv2D (see `to_keras`)."""

    state_dict: dict = None
    prefix: str = ""
    shuffle: int = 1
    bias_scale: float = 1.0
    kernel_scale: float = 1.0

    @classmethod
    def of(cls, state_dict, prefix, layer, shuffle=1, bias_scale=1.0, kernel_scale=1.0):
        keys = conv_keys(state_dict, prefix)
        shape = tuple(np.shape(state_dict[keys[-2]]))
        return cls(layer, keys, f"{keys[-2]} has shape {shape} (OIHW)",
                   state_dict=state_dict, prefix=prefix, shuffle=shuffle,
                   bias_scale=bias_scale, kernel_scale=kernel_scale)

    def arrays(self):
        weight, bias = conv_params(self.state_dict, self.prefix)
        return list(to_keras(weight * self.kernel_scale, bias, self.shuffle, self.bias_scale))


# ---------------------------------------------------------------- EDSR's convs

@dataclasses.dataclass(frozen=True)
class EdsrLayout:
    """Where one code base keeps EDSR's convs: head, block convs, body end, upsampler, tail."""

    name: str
    head: str
    block: str  # the key prefix of block i's convs, with {i} and {conv}
    block_convs: tuple
    block_pattern: str  # finds the block indices
    body: str
    upsampler: str
    tail: str


def edsr_keys(state_dict, layout):
    """The keys an EDSR state_dict in `layout` has, for as many blocks and upsampling
    stages as `state_dict` shows (the set that detection compares)."""
    n = len(indices(state_dict, layout.block_pattern))
    stages = max(1, len(indices(state_dict, re.escape(layout.upsampler) + r"\.(\d+)\.")))
    prefixes = [layout.head, layout.body.format(n=n), layout.tail]
    prefixes += [layout.block.format(i=i, conv=conv)
                 for i in range(n) for conv in layout.block_convs]
    prefixes += [f"{layout.upsampler}.{2 * k}" for k in range(stages)]
    return set().union(*(conv_key_set(state_dict, p) for p in prefixes))


def describe_edsr(state_dict, layout, bias_scale):
    """(args, fills, evidence) of an EDSR state_dict in a code base's `layout`."""
    require(state_dict, layout.head, layout.name)
    num_filters = rgb_conv(state_dict, layout.head, "in")[0]
    first = layout.block.format(i=0, conv=layout.block_convs[0])
    blocks = indices(state_dict, layout.block_pattern)
    if not blocks:
        raise PortError(f"{layout.name} state_dict without residual blocks (no key "
                        f"{first}.weight)")
    require_contiguous(blocks, f"{layout.name} body", layout.block.format(i="N", conv="*"))
    n = len(blocks)
    scale, stages, scale_evidence = upsampler(state_dict, layout.upsampler, num_filters)
    rgb_conv(state_dict, layout.tail, "out")

    def fill(prefix, layer, shuffle=1):
        return ConvFill.of(state_dict, prefix, layer, shuffle, bias_scale)

    fills = [fill(layout.head, "head_conv")]
    for i in range(n):
        fills += [fill(layout.block.format(i=i, conv=conv), f"block{i + 1}_conv{k + 1}")
                  for k, conv in enumerate(layout.block_convs)]
    fills.append(fill(layout.body.format(n=n), "body_conv"))
    fills += [fill(key, f"upsample_x{scale}_conv{k + 1}", r)
              for k, (key, r) in enumerate(stages)]
    fills.append(fill(layout.tail, "output_conv"))
    args = {"scale": scale, "num_filters": num_filters, "num_res_blocks": n}
    evidence = {
        "scale": f"the state_dict has {scale} ({scale_evidence})",
        "num_filters": f"the state_dict has {num_filters} ({layout.head}.weight "
                       f"{conv_shape(state_dict, layout.head)})",
        "num_res_blocks": f"the state_dict has {n} (keys "
                          + layout.block.format(i=f"0..{n - 1}", conv="*") + ")",
    }
    return args, fills, evidence


def full_edsr_scaling(args):
    """The residual scaling assumed for an EDSR state_dict (none stores it): 0.1 for the
    published full EDSR, else none; as `Plan.assumed`."""
    if all(args.get(k) == v for k, v in FULL_EDSR.items()):
        return {"res_block_scaling": (FULL_EDSR_SCALING, "as published for full EDSR")}
    return {}
