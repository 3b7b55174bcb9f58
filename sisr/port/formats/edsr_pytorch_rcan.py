"""EDSR-PyTorch RCAN (sanghyun-son/EDSR-PyTorch, src/model/rcan.py; the official RCAN
code, yulunzhang/RCAN, keeps the same keys: its `RCAN_BIX2/3/4/8.pt` files) state_dicts.

Keys: `sub_mean`/`add_mean` MeanShift 1x1 convs, `head.0`, group g block b
`body.{g}.body.{b}.body.{0,2}` with channel attention `body.{g}.body.{b}.body.3.conv_du.{0,2}`,
the group's conv `body.{g}.body.{B}`, `body.{G}`, upsampler `tail.0.{0,2,4}` and `tail.1`.
"""

import dataclasses
import re

from sisr.port.formats.edsr_pytorch import MEAN_SHIFT, _check_mean_shift
from sisr.port.plan import Plan, PortError
from sisr.port.rules import (
    ConvFill, conv_key_set, conv_shape, indices, require, require_contiguous, rgb_conv,
    upsampler,
)

NAME = "edsr-pytorch-rcan"
ALIASES = {"rcan": None}


@dataclasses.dataclass(frozen=True)
class RcanLayout:
    """Where one code base keeps RCAN's convs (templates with {g}, {b}, {n})."""

    name: str
    head: str
    group_pattern: str     # captures the group indices
    block_pattern: str     # captures group g's block indices (with {g})
    block_convs: tuple     # conv1, conv2 of block b of group g (with {g}, {b})
    attention: tuple       # the attention's down and up convs
    group_conv: str        # with {g} and {n} = the number of blocks
    body: str              # with {n} = the number of groups
    upsampler: str
    tail: str


LAYOUT = RcanLayout(
    "EDSR-PyTorch RCAN", "head.0", r"body\.(\d+)\.body\.", r"body\.{g}\.body\.(\d+)\.body\.",
    ("body.{g}.body.{b}.body.0", "body.{g}.body.{b}.body.2"),
    ("body.{g}.body.{b}.body.3.conv_du.0", "body.{g}.body.{b}.body.3.conv_du.2"),
    "body.{g}.body.{n}", "body.{n}", "tail.0", "tail.1")


def _counts(state_dict, layout):
    groups = indices(state_dict, layout.group_pattern)
    blocks = indices(state_dict, layout.block_pattern.format(g=0)) if groups else []
    return groups, blocks


def rcan_keys(state_dict, layout):
    """The keys of an RCAN in `layout` with as many groups, blocks and upsampling stages
    as `state_dict` shows."""
    groups, blocks = _counts(state_dict, layout)
    stages = max(1, len(indices(state_dict, re.escape(layout.upsampler) + r"\.(\d+)\.")))
    g_n, b_n = len(groups), len(blocks)
    prefixes = [layout.head, layout.body.format(n=g_n), layout.tail]
    prefixes += [f"{layout.upsampler}.{2 * k}" for k in range(stages)]
    for g in range(g_n):
        prefixes.append(layout.group_conv.format(g=g, n=b_n))
        for b in range(b_n):
            prefixes += [t.format(g=g, b=b) for t in layout.block_convs + layout.attention]
    return set().union(*(conv_key_set(state_dict, p) for p in prefixes))


def describe_rcan(state_dict, layout, feature_scale):
    """(args, fills, evidence) of an RCAN state_dict in `layout`.

    sisr's features are `feature_scale` times the checkpoint's (its normalisation divides
    by less): every bias is scaled by it, and, since the attention's sigmoid must see the
    same values, the attention's up-projection kernel is divided by it.
    """
    require(state_dict, layout.head, layout.name)
    num_filters = rgb_conv(state_dict, layout.head, "in")[0]
    groups, blocks = _counts(state_dict, layout)
    if not groups or not blocks:
        raise PortError(f"{layout.name} state_dict without residual groups of blocks (no "
                        f"key {layout.block_convs[0].format(g=0, b=0)}.weight)")
    require_contiguous(groups, f"{layout.name} body", layout.group_conv.format(g="N", n="*"))
    require_contiguous(blocks, f"{layout.name} group 0", layout.block_convs[0].format(
        g=0, b="N"))
    g_n, b_n = len(groups), len(blocks)
    for g in groups:
        found = indices(state_dict, layout.block_pattern.format(g=g))
        if found != blocks:
            raise PortError(f"{layout.name}: group {g} has {len(found)} blocks, group 0 has "
                            f"{b_n}; sisr's RCAN has the same number in every group")
    down = conv_shape(state_dict, layout.attention[0].format(g=0, b=0))
    if down[1] != num_filters or num_filters % down[0]:
        raise PortError(f"{layout.attention[0].format(g=0, b=0)}.weight has shape {down}: "
                        f"expected (F / reduction, {num_filters}, 1, 1)")
    reduction = num_filters // down[0]
    if num_filters // reduction != down[0]:
        raise PortError(f"{layout.attention[0].format(g=0, b=0)}.weight has {down[0]} "
                        f"outputs, which no reduction of {num_filters} filters gives")
    scale, stages, scale_evidence = upsampler(state_dict, layout.upsampler, num_filters)
    rgb_conv(state_dict, layout.tail, "out")

    def fill(prefix, layer, shuffle=1, kernel_scale=1.0):
        return ConvFill.of(state_dict, prefix, layer, shuffle, bias_scale=feature_scale,
                           kernel_scale=kernel_scale)

    fills = [fill(layout.head, "head_conv")]
    for g in range(g_n):
        for b in range(b_n):
            name = f"group{g + 1}_block{b + 1}"
            conv1, conv2 = (t.format(g=g, b=b) for t in layout.block_convs)
            down_key, up_key = (t.format(g=g, b=b) for t in layout.attention)
            fills += [fill(conv1, f"{name}_conv1"), fill(conv2, f"{name}_conv2"),
                      fill(down_key, f"{name}_ca_down")]
            up = ConvFill.of(state_dict, up_key, f"{name}_ca_up",
                             kernel_scale=1.0 / feature_scale)
            fills.append(up)
        fills.append(fill(layout.group_conv.format(g=g, n=b_n), f"group{g + 1}_conv"))
    fills.append(fill(layout.body.format(n=g_n), "body_conv"))
    fills += [fill(key, f"upsample_x{scale}_conv{k + 1}", r)
              for k, (key, r) in enumerate(stages)]
    fills.append(fill(layout.tail, "output_conv"))
    args = {"scale": scale, "num_groups": g_n, "num_blocks": b_n, "num_filters": num_filters,
            "reduction": reduction}
    evidence = {
        "scale": f"the state_dict has {scale} ({scale_evidence})",
        "num_filters": f"the state_dict has {num_filters} ({layout.head}.weight "
                       f"{conv_shape(state_dict, layout.head)})",
        "num_groups": f"the state_dict has {g_n} (groups 0..{g_n - 1})",
        "num_blocks": f"the state_dict has {b_n} (blocks 0..{b_n - 1} in each group)",
        "reduction": f"the state_dict has {reduction} ({layout.attention[0].format(g=0, b=0)}"
                     f".weight {down})",
    }
    return args, fills, evidence


def expected_keys(state_dict):
    """The keys of an EDSR-PyTorch RCAN as large as `state_dict` looks."""
    return rcan_keys(state_dict, LAYOUT) | set(MEAN_SHIFT)


def detect(state_dict):
    """True if the key set is exactly an EDSR-PyTorch RCAN's."""
    try:
        return set(state_dict) == expected_keys(state_dict)
    except (PortError, TypeError):
        return False


def describe(state_dict, **options):
    """The `Plan` of an EDSR-PyTorch RCAN state_dict (rgb_range 255 or 1, read from its
    MeanShift)."""
    rgb_range = _check_mean_shift(state_dict, -1)
    if _check_mean_shift(state_dict, +1) != rgb_range:
        raise PortError("sub_mean.bias and add_mean.bias use different rgb_range values")
    # EDSR-PyTorch's RCAN sees (x - 255 mean) * rgb_range / 255; sisr's, x - 255 mean.
    args, fills, evidence = describe_rcan(state_dict, LAYOUT, 255.0 / rgb_range)
    return Plan(NAME, "rcan", args, fills, keys=tuple(state_dict), evidence=evidence,
                checked_keys=MEAN_SHIFT)
