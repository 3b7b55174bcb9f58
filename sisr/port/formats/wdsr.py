"""Official WDSR (JiahuiYu/wdsr_ntire2018, wdsr_a.py / wdsr_b.py) state_dicts.

Keys: weight-normalised `head.0`, `body.{i}.body.{0,2}` (A) or `.{0,2,3}` (B), `tail.0`
and `skip.0`, each feeding one PixelShuffle(scale). Same normalisation as sisr.
"""

from sisr.model.wdsr import LINEAR
from sisr.port.plan import Plan, PortError
from sisr.port.rules import (
    ConvFill, conv_key_set, conv_shape, indices, require, require_contiguous, rgb_conv,
)

NAME = "wdsr"
# --from wdsr-a / wdsr-b also say which variant the checkpoint must be
ALIASES = {"wdsr-ntire2018": None, "wdsr-official": None, "wdsr-a": "wdsr_a",
           "wdsr-b": "wdsr_b"}
BLOCK_CONVS = {"wdsr_a": {0: "conv1", 2: "conv2"},
               "wdsr_b": {0: "conv1", 2: "conv2", 3: "conv3"}}


def expected_keys(state_dict):
    """The keys of an official WDSR-A, or WDSR-B if block 0 has a third conv."""
    variant = "wdsr_b" if any(k.startswith("body.0.body.3.") for k in state_dict) \
        else "wdsr_a"
    n = len(indices(state_dict, r"body\.(\d+)\.body\."))
    prefixes = ["head.0", "tail.0", "skip.0"] + [
        f"body.{i}.body.{j}" for i in range(n) for j in BLOCK_CONVS[variant]]
    return set().union(*(conv_key_set(state_dict, p) for p in prefixes))


def detect(state_dict):
    """True if the key set is exactly an official WDSR-A's or WDSR-B's."""
    return set(state_dict) == expected_keys(state_dict)


def describe(state_dict, **options):
    """The `Plan` of an official WDSR-A or WDSR-B state_dict."""
    require(state_dict, "head.0", "official WDSR")
    require(state_dict, "skip.0", "official WDSR")
    num_filters = rgb_conv(state_dict, "head.0", "in")[0]
    blocks = indices(state_dict, r"body\.(\d+)\.body\.")
    if not blocks:
        raise PortError("WDSR state_dict without residual blocks (no key body.0.body.0.*)")
    require_contiguous(blocks, "WDSR body", "body.N.body.*")
    n = len(blocks)
    # only conv parameters count here; any other key is reported as unexpected later
    convs_in_block = indices(state_dict, r"body\.0\.body\.(\d+)\.(?:weight|bias|param)")
    wide_shape = conv_shape(state_dict, "body.0.body.0")
    model = {(0, 2): "wdsr_a", (0, 2, 3): "wdsr_b"}.get(tuple(convs_in_block))
    if model is None:
        raise PortError(f"WDSR block body.0 has convs body.0.body.{convs_in_block}: expected "
                        "[0, 2] (WDSR-A) or [0, 2, 3] (WDSR-B)")
    if model == "wdsr_b":
        linear = int(num_filters * LINEAR)
        low_rank = conv_shape(state_dict, "body.0.body.2")
        if low_rank[0] != linear:
            raise PortError(f"body.0.body.2 has shape {low_rank}: sisr's WDSR-B has "
                            f"int({num_filters} * {LINEAR}) = {linear} low-rank channels")
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

    # the official WDSR normalises exactly as sisr does: biases unchanged
    fills = [ConvFill.of(state_dict, "head.0", "head_conv")]
    for i in range(n):
        fills += [ConvFill.of(state_dict, f"body.{i}.body.{j}", f"block{i + 1}_{name}")
                  for j, name in BLOCK_CONVS[model].items()]
    fills += [ConvFill.of(state_dict, "tail.0", f"main_x{scale}_conv", scale),
              ConvFill.of(state_dict, "skip.0", f"skip_x{scale}_conv", scale)]
    args = {"scale": scale, "num_filters": num_filters, "num_res_blocks": n,
            "res_block_expansion": expansion}
    evidence = {
        "scale": f"the state_dict has {scale} (tail.0 {tail}, skip.0 {skip}: "
                 f"3*{scale}^2 outputs)",
        "num_filters": f"the state_dict has {num_filters} (head.0 "
                       f"{conv_shape(state_dict, 'head.0')})",
        "num_res_blocks": f"the state_dict has {n} (keys body.0..{n - 1}.body.*)",
        "res_block_expansion": f"the state_dict has {expansion} (body.0.body.0 {wide_shape})",
        "model": f"the state_dict is {model} (block convs body.0.body.{convs_in_block})",
    }
    return Plan(NAME, model, args, fills, keys=tuple(state_dict), evidence=evidence)
