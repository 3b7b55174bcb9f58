"""EDSR-PyTorch MDSR (sanghyun-son/EDSR-PyTorch, src/model/mdsr.py and common.py)
state_dicts, e.g. the official `mdsr_baseline-a00cab12.pt` and `mdsr-4a78bedf.pt`.

Keys: `sub_mean`/`add_mean` MeanShift 1x1 convs, `head.0`, per scale i
`pre_process.{i}.{0,1}.body.{0,2}` (5x5) and `upsample.{i}.{0,2}` (one conv per x2 stage,
or a single x3 one), the shared `body.{j}.body.{0,2}` and `body.{N}`, and `tail.0`. The
branch order is the training run's `--scale` order (2+3+4 for the official files); each
branch's scale is read from its upsampler. The port builds the multi-scale model (one
output per branch), or with a requested scale that branch's single-scale model.
"""

from sisr.port.formats.edsr_pytorch import MEAN_SHIFT, _check_mean_shift
from sisr.port.plan import Plan, PortError
from sisr.port.rules import (
    ConvFill, conv_key_set, conv_shape, indices, require, require_contiguous, rgb_conv,
    upsampler,
)

NAME = "mdsr-pytorch"
ALIASES = {"mdsr": None}
PRE_BLOCKS = 2


def _counts(state_dict):
    branches = indices(state_dict, r"pre_process\.(\d+)\.")
    ups = indices(state_dict, r"upsample\.(\d+)\.")
    blocks = indices(state_dict, r"body\.(\d+)\.body\.")
    return branches, ups, blocks


def expected_keys(state_dict):
    """The keys of an EDSR-PyTorch MDSR as large as `state_dict` looks."""
    branches, ups, blocks = _counts(state_dict)
    n, count = len(blocks), max(len(branches), len(ups), 1)
    prefixes = ["head.0", f"body.{n}", "tail.0"]
    prefixes += [f"body.{j}.body.{c}" for j in range(n) for c in (0, 2)]
    for i in range(count):
        prefixes += [f"pre_process.{i}.{k}.body.{c}" for k in range(PRE_BLOCKS) for c in (0, 2)]
        stages = max(1, len(indices(state_dict, rf"upsample\.{i}\.(\d+)\.")))
        prefixes += [f"upsample.{i}.{2 * k}" for k in range(stages)]
    return set().union(*(conv_key_set(state_dict, p) for p in prefixes)) | set(MEAN_SHIFT)


def detect(state_dict):
    """True if the key set is exactly an EDSR-PyTorch MDSR's."""
    keys = set(state_dict)
    return any(k.startswith("pre_process.") for k in keys) and keys == expected_keys(state_dict)


def describe(state_dict, **options):
    """The `Plan` of an EDSR-PyTorch MDSR state_dict: the multi-scale model (args `scale`
    None, `branch_scales` as the checkpoint's branches), or with one branch its
    single-scale model."""
    rgb_range = _check_mean_shift(state_dict, -1)
    if _check_mean_shift(state_dict, +1) != rgb_range:
        raise PortError("sub_mean.bias and add_mean.bias use different rgb_range values")
    require(state_dict, "head.0", "EDSR-PyTorch MDSR")
    require(state_dict, "pre_process", "EDSR-PyTorch MDSR")
    num_filters = rgb_conv(state_dict, "head.0", "in")[0]
    branches, ups, blocks = _counts(state_dict)
    require_contiguous(branches, "EDSR-PyTorch MDSR pre_process", "pre_process.N.*")
    if ups != branches:
        raise PortError(f"EDSR-PyTorch MDSR: pre_process branches {branches} and upsample "
                        f"branches {ups} differ (one of each per scale)")
    if not blocks:
        raise PortError("EDSR-PyTorch MDSR state_dict without residual blocks (no key "
                        "body.0.body.0.weight)")
    require_contiguous(blocks, "EDSR-PyTorch MDSR body", "body.N.body.*")
    n = len(blocks)
    rgb_conv(state_dict, "tail.0", "out")
    # EDSR-PyTorch's network sees (x - 255 mean) * rgb_range / 255, sisr's
    # (x - 255 mean) / 127.5: the same kernels, biases times 2 / rgb_range (see
    # `edsr_pytorch.describe`).
    bias_scale = 2.0 / rgb_range

    def fill(prefix, layer, shuffle=1):
        return ConvFill.of(state_dict, prefix, layer, shuffle, bias_scale)

    fills = [fill("head.0", "head_conv")]
    for j in range(n):
        fills += [fill(f"body.{j}.body.{c}", f"block{j + 1}_conv{k + 1}")
                  for k, c in enumerate((0, 2))]
    fills += [fill(f"body.{n}", "body_conv"), fill("tail.0", "output_conv")]
    scales, shown = [], []
    for i in branches:
        scale, stages, what = upsampler(state_dict, f"upsample.{i}", num_filters)
        if scale in scales:
            raise PortError(f"EDSR-PyTorch MDSR: upsample.{i} repeats scale x{scale}")
        scales.append(scale)
        shown.append(what)
        for k in range(PRE_BLOCKS):
            for m, c in enumerate((0, 2)):
                prefix = f"pre_process.{i}.{k}.body.{c}"
                shape = conv_shape(state_dict, prefix)
                if shape != (num_filters, num_filters, 5, 5):
                    raise PortError(f"{prefix}.weight has shape {shape}, expected "
                                    f"{(num_filters, num_filters, 5, 5)} (MDSR's 5x5 "
                                    "pre-processing)")
                fills.append(fill(prefix, f"pre_x{scale}_block{k + 1}_conv{m + 1}"))
        fills += [fill(key, f"upsample_x{scale}_conv{k + 1}", r)
                  for k, (key, r) in enumerate(stages)]
    # One branch (a run with one --scale): an ordinary single-scale model of that scale.
    args = {"scale": scales[0] if len(scales) == 1 else None, "num_filters": num_filters,
            "num_res_blocks": n, "branch_scales": scales}
    evidence = {
        "scale": f"the state_dict has {scales[0]} ({shown[0]})" if len(scales) == 1
        else f"the state_dict has every scale of {scales}",
        "branch_scales": f"the state_dict has {scales} ({'; '.join(shown)})",
        "num_filters": f"the state_dict has {num_filters} (head.0.weight "
                       f"{conv_shape(state_dict, 'head.0')})",
        "num_res_blocks": f"the state_dict has {n} (keys body.0..{n - 1}.body.*)",
    }
    return Plan(NAME, "mdsr", args, fills, keys=tuple(state_dict), evidence=evidence,
                checked_keys=MEAN_SHIFT)
