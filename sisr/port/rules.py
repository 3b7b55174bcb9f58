"""Key layouts of the official PyTorch implementations, and the sisr layer of each conv.

For each source, `describe(state_dict)` infers the architecture (filters, blocks,
expansion, scale) from the key names and shapes and returns the conv-by-conv mapping
to the layers of the sisr model that reproduces it:

- EDSR-PyTorch (src/model/edsr.py, common.py): `sub_mean`/`add_mean` MeanShift 1x1
  convs, `head.0`, `body.{i}.body.{0,2}`, `body.{N}`, upsampler `tail.0.{0,2,4}`
  (one conv per x2 stage, or a single x3 one) and `tail.1`. Works on `x - mean`
  without the /127.5 of sisr.
- Official WDSR (wdsr_ntire2018 wdsr_a.py / wdsr_b.py): weight-normalised `head.0`,
  `body.{i}.body.{0,2}` (A) or `.{0,2,3}` (B), `tail.0` and `skip.0`, each feeding one
  PixelShuffle(scale). Same normalisation as sisr.
- BasicSR EDSR (basicsr/archs/edsr_arch.py): `conv_first`, `body.{i}.conv{1,2}`,
  `conv_after_body`, `upsample.{0,2,4}`, `conv_last`; takes [0, 1] images and works on
  `(x - mean) * img_range`, its mean is not in the state_dict.
"""

import dataclasses
import re

import numpy as np

from sisr.errors import SisrError
from sisr.layers import DIV2K_RGB_MEAN
from sisr.model.wdsr import LINEAR

SOURCES = ("edsr-pytorch", "wdsr", "basicsr-edsr")
# Published full EDSR (256 filters, 32 blocks) is trained with residual scaling 0.1;
# the factor is not in the state_dict, so this configuration implies it by default.
FULL_EDSR = {"num_filters": 256, "num_res_blocks": 32}
FULL_EDSR_SCALING = 0.1


class PortError(SisrError, ValueError):
    """A state_dict that does not match the requested or any supported architecture."""


@dataclasses.dataclass(frozen=True)
class ConvMap:
    """One PyTorch conv (`key` prefix) loaded into the sisr Conv2D layer `layer`.

    `shuffle` is the factor r of the PixelShuffle the conv feeds (1: none), whose
    output-channel order differs between PyTorch and TensorFlow.
    """

    key: str
    layer: str
    shuffle: int = 1


@dataclasses.dataclass
class Architecture:
    """What a state_dict holds: the sisr model, its builder arguments, the conv mapping.

    `bias_scale` multiplies every bias (the normalisation difference), `checked_keys`
    are consumed by checks rather than loaded (EDSR-PyTorch's MeanShift), `evidence`
    says which keys each inferred argument came from (for error messages).
    """

    source: str
    model: str
    args: dict
    convs: list
    bias_scale: float = 1.0
    checked_keys: tuple = ()
    evidence: dict = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------- conv parameters

def conv_keys(state_dict, prefix):
    """The keys of the conv `prefix`: plain, legacy weight norm, or parametrized."""
    plain = (f"{prefix}.weight",)
    legacy = (f"{prefix}.weight_g", f"{prefix}.weight_v")
    parametrized = (f"{prefix}.parametrizations.weight.original0",
                    f"{prefix}.parametrizations.weight.original1")
    for weight_keys in (legacy, parametrized, plain):
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

def _indices(state_dict, pattern):
    """Sorted distinct integers captured by `pattern` (one group) at the start of keys."""
    regex = re.compile(pattern)
    found = set()
    for key in state_dict:
        match = regex.match(key)
        if match:
            found.add(int(match.group(1)))
    return sorted(found)


def _require_contiguous(indices, what, pattern_text):
    if indices != list(range(len(indices))):
        missing = sorted(set(range(max(indices) + 1)) - set(indices))
        raise PortError(f"{what}: keys {pattern_text} are not numbered 0..{len(indices) - 1}; "
                        f"missing index(es) {missing}")


def _require(state_dict, prefix, source):
    if not any(k.startswith(prefix + ".") for k in state_dict):
        raise PortError(f"not an {source} state_dict: missing key(s) {prefix}.* "
                        f"(found e.g. {', '.join(sorted(state_dict)[:4])})")


def _rgb_conv(state_dict, prefix, direction, kernel=3):
    shape = conv_shape(state_dict, prefix)
    channels = shape[1] if direction == "in" else shape[0]
    if channels != 3:
        raise PortError(f"{prefix} has shape {shape}: sisr models are RGB, expected 3 "
                        f"{direction}put channels")
    if shape[2:] != (kernel, kernel):
        raise PortError(f"{prefix} has shape {shape}, expected a {kernel}x{kernel} kernel")
    return shape


def _upsampler(state_dict, prefix, num_filters):
    """Scale and conv keys of an EDSR upsampler: x2 stages `{prefix}.0/.2/.4`, or one x3."""
    stages = _indices(state_dict, re.escape(prefix) + r"\.(\d+)\.")
    if not stages:
        raise PortError(f"missing key(s): {prefix}.0.weight (the upsampler's first conv)")
    if stages != list(range(0, 2 * len(stages), 2)):
        raise PortError(f"upsampler keys {prefix}.N: expected N = 0, 2, 4... (conv, "
                        f"PixelShuffle, conv...), found {stages}")
    keys = [f"{prefix}.{i}" for i in stages]
    factors = []
    for key in keys:
        out_ch, in_ch = conv_shape(state_dict, key)[:2]
        ratio = out_ch // num_filters
        if in_ch != num_filters or out_ch % num_filters or ratio not in (4, 9):
            raise PortError(f"{key}.weight has shape {conv_shape(state_dict, key)}: an "
                            f"upsampler conv of {num_filters} filters has {4 * num_filters} "
                            f"(x2 stage) or {9 * num_filters} (x3) outputs and "
                            f"{num_filters} inputs")
        factors.append(2 if ratio == 4 else 3)
    if factors == [3]:
        scale = 3
    elif 3 in factors or len(factors) > 3:
        raise PortError(f"upsampler {', '.join(keys)} has factors {factors}: supported are "
                        "one x3 stage or one to three x2 stages (x2, x4, x8)")
    else:
        scale = 2 ** len(factors)
    evidence = (f"{', '.join(k + '.weight' for k in keys)}: "
                + (f"{len(factors)} x2 pixel-shuffle stage(s)" if factors[0] == 2
                   else "one x3 pixel-shuffle stage"))
    return scale, list(zip(keys, factors)), evidence


def _check_mean_shift(state_dict, sign):
    """Checks an EDSR-PyTorch MeanShift against the DIV2K mean; returns its rgb_range."""
    prefix = "sub_mean" if sign < 0 else "add_mean"
    weight_key, bias_key = f"{prefix}.weight", f"{prefix}.bias"
    for key, shape in ((weight_key, (3, 3, 1, 1)), (bias_key, (3,))):
        if key not in state_dict:
            raise PortError(f"missing key: {key} (EDSR-PyTorch's MeanShift)")
        if tuple(np.shape(state_dict[key])) != shape:
            raise PortError(f"{key} has shape {tuple(np.shape(state_dict[key]))}, "
                            f"expected {shape}")
    weight = np.asarray(state_dict[weight_key], np.float64).reshape(3, 3)
    if not np.allclose(weight, np.eye(3), rtol=0, atol=1e-6):
        raise PortError(f"{weight_key} is not the identity: the checkpoint uses rgb_std != 1, "
                        f"sisr normalises with std 1 (got diagonal {np.diag(weight).tolist()})")
    bias = np.asarray(state_dict[bias_key], np.float64)
    mean01 = np.asarray(DIV2K_RGB_MEAN) / 255.0
    for rgb_range in (255.0, 1.0):
        if np.allclose(bias, sign * rgb_range * mean01, rtol=1e-5, atol=1e-6):
            return rgb_range
    raise PortError(
        f"{bias_key} = {np.round(bias, 5).tolist()} is not {'-' if sign < 0 else '+'}rgb_range"
        f" x the DIV2K mean {tuple(np.round(mean01, 4))} (rgb_range 255 or 1): the "
        "checkpoint was trained with another mean, which sisr's models do not support"
    )


# ---------------------------------------------------------------- sources

@dataclasses.dataclass(frozen=True)
class _EdsrLayout:
    """Where one code base keeps EDSR's convs: head, block convs, body end, upsampler, tail."""

    name: str
    head: str
    block: str  # the key prefix of block i's convs, with {i} and {conv}
    block_convs: tuple
    block_pattern: str  # finds the block indices
    body: str
    upsampler: str
    tail: str


_EDSR_PYTORCH = _EdsrLayout("EDSR-PyTorch", "head.0", "body.{i}.body.{conv}", ("0", "2"),
                            r"body\.(\d+)\.body\.", "body.{n}", "tail.0", "tail.1")
_BASICSR_EDSR = _EdsrLayout("BasicSR EDSR", "conv_first", "body.{i}.{conv}", ("conv1", "conv2"),
                            r"body\.(\d+)\.conv", "conv_after_body", "upsample", "conv_last")


def _describe_edsr(state_dict, layout):
    """EDSR's arguments, conv mapping and evidence in a code base's `layout`."""
    _require(state_dict, layout.head, layout.name)
    num_filters = _rgb_conv(state_dict, layout.head, "in")[0]
    first = layout.block.format(i=0, conv=layout.block_convs[0])
    blocks = _indices(state_dict, layout.block_pattern)
    if not blocks:
        raise PortError(f"{layout.name} state_dict without residual blocks (no key "
                        f"{first}.weight)")
    _require_contiguous(blocks, f"{layout.name} body",
                        layout.block.format(i="N", conv="*"))
    n = len(blocks)
    scale, stages, scale_evidence = _upsampler(state_dict, layout.upsampler, num_filters)
    _rgb_conv(state_dict, layout.tail, "out")
    convs = [ConvMap(layout.head, "head_conv")]
    for i in range(n):
        convs += [ConvMap(layout.block.format(i=i, conv=conv), f"block{i + 1}_conv{k + 1}")
                  for k, conv in enumerate(layout.block_convs)]
    convs.append(ConvMap(layout.body.format(n=n), "body_conv"))
    convs += [ConvMap(key, f"upsample_x{scale}_conv{k + 1}", r)
              for k, (key, r) in enumerate(stages)]
    convs.append(ConvMap(layout.tail, "output_conv"))
    args = {"scale": scale, "num_filters": num_filters, "num_res_blocks": n}
    evidence = {"scale": scale_evidence,
                "num_filters": f"{layout.head}.weight {conv_shape(state_dict, layout.head)}",
                "num_res_blocks": "keys " + layout.block.format(i=f"0..{n - 1}", conv="*")}
    return args, convs, evidence


def describe_edsr_pytorch(state_dict):
    args, convs, evidence = _describe_edsr(state_dict, _EDSR_PYTORCH)
    rgb_range = _check_mean_shift(state_dict, -1)
    if _check_mean_shift(state_dict, +1) != rgb_range:
        raise PortError("sub_mean.bias and add_mean.bias use different rgb_range values")
    return Architecture(
        source="edsr-pytorch", model="edsr", args=args, convs=convs,
        # EDSR-PyTorch's network (convs, ReLUs, adds: positively homogeneous) sees
        # u = (x - 255 mean) * rgb_range/255, sisr's sees (x - 255 mean)/127.5 = c*u
        # with c = 2/rgb_range, and both outputs are rescaled alike: the same kernels
        # with every bias multiplied by c give exactly c times the PyTorch features.
        bias_scale=2.0 / rgb_range,
        checked_keys=("sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias"),
        evidence=evidence,
    )


def describe_basicsr_edsr(state_dict, img_range=255.0):
    args, convs, evidence = _describe_edsr(state_dict, _BASICSR_EDSR)
    if not img_range > 0:
        raise PortError(f"img_range must be positive, got {img_range!r}")
    return Architecture(
        source="basicsr-edsr", model="edsr", args=args, convs=convs,
        # BasicSR: (x01 - mean) * img_range = (x255 - 255 mean) * img_range/255, and
        # sisr's input is (x255 - 255 mean)/127.5: biases scale by 2/img_range.
        bias_scale=2.0 / float(img_range),
        evidence=evidence,
    )


def describe_wdsr(state_dict):
    _require(state_dict, "head.0", "official WDSR")
    _require(state_dict, "skip.0", "official WDSR")
    num_filters = _rgb_conv(state_dict, "head.0", "in")[0]
    blocks = _indices(state_dict, r"body\.(\d+)\.body\.")
    if not blocks:
        raise PortError("WDSR state_dict without residual blocks (no key body.0.body.0.*)")
    _require_contiguous(blocks, "WDSR body", "body.N.body.*")
    n = len(blocks)
    # only conv parameters count here; any other key is reported as unexpected later
    convs_in_block = _indices(state_dict, r"body\.0\.body\.(\d+)\.(?:weight|bias|param)")
    wide_shape = conv_shape(state_dict, "body.0.body.0")
    if convs_in_block == [0, 2, 3]:
        model = "wdsr_b"
        linear = int(num_filters * LINEAR)
        low_rank = conv_shape(state_dict, "body.0.body.2")
        if low_rank[0] != linear:
            raise PortError(f"body.0.body.2 has shape {low_rank}: sisr's WDSR-B has "
                            f"int({num_filters} * {LINEAR}) = {linear} low-rank "
                            "channels")
        layers = {0: "conv1", 2: "conv2", 3: "conv3"}
    elif convs_in_block == [0, 2]:
        model = "wdsr_a"
        layers = {0: "conv1", 2: "conv2"}
    else:
        raise PortError(f"WDSR block body.0 has convs body.0.body.{convs_in_block}: expected "
                        "[0, 2] (WDSR-A) or [0, 2, 3] (WDSR-B)")
    if wide_shape[1] != num_filters or wide_shape[0] % num_filters:
        raise PortError(f"body.0.body.0 has shape {wide_shape}: a wide-activation conv of "
                        f"{num_filters} filters has a multiple of {num_filters} outputs")
    expansion = wide_shape[0] // num_filters

    tail = conv_shape(state_dict, "tail.0")
    scale = int(round((tail[0] / 3) ** 0.5))
    if tail[0] != 3 * scale * scale or tail[1] != num_filters or tail[2:] != (3, 3):
        raise PortError(f"tail.0 has shape {tail}: expected (3*s*s, {num_filters}, 3, 3) for "
                        "a scale s")
    skip = conv_shape(state_dict, "skip.0")
    if skip != (3 * scale * scale, 3, 5, 5):
        raise PortError(f"skip.0 has shape {skip}: expected {(3 * scale * scale, 3, 5, 5)} "
                        f"(x{scale}, from tail.0 {tail})")

    convs = [ConvMap("head.0", "head_conv")]
    for i in range(n):
        convs += [ConvMap(f"body.{i}.body.{j}", f"block{i + 1}_{name}")
                  for j, name in layers.items()]
    convs += [ConvMap("tail.0", f"main_x{scale}_conv", scale),
              ConvMap("skip.0", f"skip_x{scale}_conv", scale)]
    return Architecture(
        source="wdsr", model=model,
        args={"scale": scale, "num_filters": num_filters, "num_res_blocks": n,
              "res_block_expansion": expansion},
        convs=convs,
        bias_scale=1.0,  # the official WDSR normalises exactly as sisr does
        evidence={"scale": f"tail.0 {tail}, skip.0 {skip}: 3*{scale}^2 outputs",
                  "num_filters": f"head.0 {conv_shape(state_dict, 'head.0')}",
                  "num_res_blocks": f"keys body.0..{n - 1}.body.*",
                  "res_block_expansion": f"body.0.body.0 {wide_shape}",
                  "model": f"block convs body.0.body.{convs_in_block}"},
    )


def detect_source(state_dict):
    """Guesses the source of a state_dict from its key names (None if unknown)."""
    if "conv_first.weight" in state_dict:
        return "basicsr-edsr"
    if "sub_mean.weight" in state_dict or "add_mean.weight" in state_dict:
        return "edsr-pytorch"
    if any(k.startswith("skip.0.") for k in state_dict):
        return "wdsr"
    if any(k.startswith(("tail.0.0.", "tail.1.")) for k in state_dict):
        return "edsr-pytorch"  # without its MeanShift keys, which then get reported
    return None
