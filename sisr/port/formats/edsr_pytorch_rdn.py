"""EDSR-PyTorch RDN (sanghyun-son/EDSR-PyTorch, src/model/rdn.py) state_dicts.

Keys: `SFENet1`, `SFENet2`, block d conv c `RDBs.{d}.convs.{c}.conv.0`, local fusion
`RDBs.{d}.LFF`, global fusion `GFF.{0,1}`, upsampler `UPNet.{0,2}` (x2, x3) or
`UPNet.{0,2,4}` (x4), whose last conv makes RGB. The network has no normalisation: it
takes images on [0, rgb_range] (255 as published), which the state_dict does not store.
"""

from sisr.port.plan import Plan, PortError
from sisr.port.rules import (
    ConvFill, conv_key_set, conv_shape, indices, require, require_contiguous, rgb_conv,
)

NAME = "edsr-pytorch-rdn"
ALIASES = {"rdn": None}
BLOCKS = r"RDBs\.(\d+)\."
LAYERS = r"RDBs\.0\.convs\.(\d+)\."


def _sizes(state_dict):
    return len(indices(state_dict, BLOCKS)), len(indices(state_dict, LAYERS)), \
        len(indices(state_dict, r"UPNet\.(\d+)\."))


def expected_keys(state_dict):
    """The keys of an EDSR-PyTorch RDN as large as `state_dict` looks."""
    blocks, layers, up = _sizes(state_dict)
    prefixes = ["SFENet1", "SFENet2", "GFF.0", "GFF.1"]
    prefixes += [f"UPNet.{2 * k}" for k in range(max(up, 2))]
    for d in range(blocks):
        prefixes += [f"RDBs.{d}.convs.{c}.conv.0" for c in range(layers)]
        prefixes.append(f"RDBs.{d}.LFF")
    return set().union(*(conv_key_set(state_dict, p) for p in prefixes))


def detect(state_dict):
    """True if the key set is exactly an EDSR-PyTorch RDN's."""
    try:
        return set(state_dict) == expected_keys(state_dict)
    except (PortError, TypeError):
        return False


def _upsampler(state_dict, num_filters, growth_rate):
    """(scale, [(key, shuffle factor)] of the convs before a pixel shuffle, evidence)."""
    stages = indices(state_dict, r"UPNet\.(\d+)\.")
    if stages not in ([0, 2], [0, 2, 4]):
        raise PortError(f"upsampler keys UPNet.N: expected N = 0, 2 (x2, x3) or 0, 2, 4 "
                        f"(x4), found {stages}")
    convs = [f"UPNet.{i}" for i in stages[:-1]]
    factors = []
    for k, key in enumerate(convs):
        out_ch, in_ch = conv_shape(state_dict, key)[:2]
        r = int(round((out_ch / growth_rate) ** 0.5))
        wanted_in = num_filters if k == 0 else growth_rate
        if in_ch != wanted_in or r < 2 or r * r * growth_rate != out_ch:
            raise PortError(f"{key}.weight has shape {conv_shape(state_dict, key)}: expected "
                            f"({growth_rate} r^2, {wanted_in}, 3, 3)")
        factors.append(r)
    scales = {(2,): 2, (3,): 3, (2, 2): 4}
    if tuple(factors) not in scales:
        raise PortError(f"upsampler {', '.join(convs)} has factors {factors}: RDN's are x2, "
                        "x3 and x4 = 2 x 2")
    evidence = ", ".join(f"{k}.weight" for k in convs) + ": " + \
        ", ".join(f"x{r}" for r in factors) + " pixel-shuffle stage(s)"
    return scales[tuple(factors)], list(zip(convs, factors)), evidence, f"UPNet.{stages[-1]}"


def describe(state_dict, **options):
    """The `Plan` of an EDSR-PyTorch RDN state_dict (trained on [0, 255], as published)."""
    require(state_dict, "SFENet1", "EDSR-PyTorch RDN")
    num_filters = rgb_conv(state_dict, "SFENet1", "in")[0]
    blocks = indices(state_dict, BLOCKS)
    layers = indices(state_dict, LAYERS)
    if not blocks or not layers:
        raise PortError("EDSR-PyTorch RDN state_dict without dense blocks (no key "
                        "RDBs.0.convs.0.conv.0.weight)")
    require_contiguous(blocks, "EDSR-PyTorch RDN", "RDBs.N.*")
    require_contiguous(layers, "EDSR-PyTorch RDN block 0", "RDBs.0.convs.N.*")
    for d in blocks:
        found = indices(state_dict, rf"RDBs\.{d}\.convs\.(\d+)\.")
        if found != layers:
            raise PortError(f"EDSR-PyTorch RDN: block {d} has {len(found)} convs, block 0 "
                            f"has {len(layers)}")
    growth_rate = conv_shape(state_dict, "RDBs.0.convs.0.conv.0")[0]
    scale, stages, scale_evidence, last = _upsampler(state_dict, num_filters, growth_rate)
    rgb_conv(state_dict, last, "out")
    def fill(prefix, layer, shuffle=1):
        return ConvFill.of(state_dict, prefix, layer, shuffle)

    fills = [fill("SFENet1", "head_conv"), fill("SFENet2", "head_conv2")]
    for d in blocks:
        fills += [fill(f"RDBs.{d}.convs.{c}.conv.0", f"block{d + 1}_conv{c + 1}")
                  for c in layers]
        fills.append(fill(f"RDBs.{d}.LFF", f"block{d + 1}_fusion"))
    fills += [fill("GFF.0", "fusion_conv1"), fill("GFF.1", "fusion_conv2")]
    fills += [fill(key, f"upsample_x{scale}_conv{k + 1}", r)
              for k, (key, r) in enumerate(stages)]
    fills.append(fill(last, "output_conv"))
    args = {"scale": scale, "num_blocks": len(blocks), "num_layers": len(layers),
            "growth_rate": growth_rate, "num_filters": num_filters, "upsampler": "rdn"}
    evidence = {
        "scale": f"the state_dict has {scale} ({scale_evidence})",
        "num_blocks": f"the state_dict has {len(blocks)} (RDBs.0..{len(blocks) - 1})",
        "num_layers": f"the state_dict has {len(layers)} (RDBs.0.convs.0..{len(layers) - 1})",
        "growth_rate": f"the state_dict has {growth_rate} (RDBs.0.convs.0.conv.0.weight "
                       f"{conv_shape(state_dict, 'RDBs.0.convs.0.conv.0')})",
        "num_filters": f"the state_dict has {num_filters} (SFENet1.weight "
                       f"{conv_shape(state_dict, 'SFENet1')})",
        "upsampler": "the state_dict has 'rdn' (UPNet: EDSR-PyTorch's pixel-shuffle "
                     "upsampler)",
    }
    return Plan(NAME, "rdn", args, fills, keys=tuple(state_dict), evidence=evidence)
