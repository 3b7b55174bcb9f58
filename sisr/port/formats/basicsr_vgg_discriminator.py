"""BasicSR's `VGGStyleDiscriminator` (basicsr/archs/discriminator_arch.py) state_dicts: the
discriminator of ESRGAN (BasicSR's `net_d_*.pth`).

Keys: `conv0_0.{weight,bias}`, `conv0_1.weight`, `bn0_1.*`, then `conv{i}_{0,1}.weight`
and `bn{i}_{0,1}.*` for i = 1..4 (and 5 for 256 x 256 inputs), `linear1`, `linear2`. BN
entries: weight, bias, running_mean, running_var, num_batches_tracked (a counter, read
nowhere). PyTorch flattens the last 4 x 4 features channel-first, Keras channels-last:
linear1's inputs are permuted. Weights are copied unscaled (both work on [0, 1]).
"""

import numpy as np

from sisr.port.plan import ArrayFill, Plan, PortError
from sisr.port.rules import ConvFill, conv_shape

NAME = "basicsr-vgg-discriminator"
ALIASES = {}
PARAM_KEYS = ("params",)
BN_KEYS = ("weight", "bias", "running_mean", "running_var")
COUNTER = "num_batches_tracked"
STAGES = {128: 4, 256: 5}  # conv pairs after the first, by input size


def _stages(state_dict):
    return 5 if "conv5_0.weight" in state_dict else 4


def expected_keys(state_dict):
    """The keys of a VGGStyleDiscriminator of the input size `state_dict` looks like."""
    keys = {"conv0_0.weight", "conv0_0.bias", "conv0_1.weight"}
    bns = ["bn0_1"]
    for i in range(1, _stages(state_dict) + 1):
        keys |= {f"conv{i}_0.weight", f"conv{i}_1.weight"}
        bns += [f"bn{i}_0", f"bn{i}_1"]
    keys |= {f"{bn}.{k}" for bn in bns for k in BN_KEYS}
    keys |= {f"{bn}.{COUNTER}" for bn in bns if f"{bn}.{COUNTER}" in state_dict}
    return keys | {"linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"}


def detect(state_dict):
    """True if the key set is exactly a VGGStyleDiscriminator's."""
    return set(state_dict) == expected_keys(state_dict)


def _array(state_dict, key):
    return np.asarray(state_dict[key], np.float32)


def _bn_fill(state_dict, prefix, layer):
    keys = tuple(f"{prefix}.{k}" for k in BN_KEYS)
    return ArrayFill(layer, keys, f"{prefix}.weight has shape "
                     f"{np.shape(state_dict[keys[0]])}",
                     values=[_array(state_dict, k) for k in keys])


def _linear1(state_dict):
    weight = _array(state_dict, "linear1.weight")
    if weight.ndim != 2 or weight.shape[1] % 16:
        raise PortError(f"linear1.weight has shape {weight.shape}: expected (100, C * 4 * 4)")
    channels = weight.shape[1] // 16
    kernel = weight.reshape(-1, channels, 4, 4).transpose(2, 3, 1, 0).reshape(-1, len(weight))
    return ArrayFill("linear1", ("linear1.weight", "linear1.bias"),
                     f"linear1.weight has shape {weight.shape}",
                     values=[kernel, _array(state_dict, "linear1.bias")])


def describe(state_dict, **options):
    """The `Plan` of a VGGStyleDiscriminator state_dict."""
    missing = sorted(expected_keys(state_dict) - set(state_dict))
    if missing:
        raise PortError(f"not a VGGStyleDiscriminator state_dict: missing "
                        f"{', '.join(missing[:4])}" + (" ..." if len(missing) > 4 else ""))
    stages = _stages(state_dict)
    hr_size = {v: k for k, v in STAGES.items()}[stages]
    head = conv_shape(state_dict, "conv0_0")
    if head[1] != 3:
        raise PortError(f"conv0_0.weight has shape {head}: sisr discriminators take RGB, "
                        "expected 3 input channels")
    args = {"hr_size": hr_size, "num_feat": head[0]}
    evidence = {"hr_size": f"the state_dict has {stages} stride-2 stages after the first "
                           f"(conv1_1 ... conv{stages}_1: {hr_size} x {hr_size} inputs)",
                "num_feat": f"conv0_0.weight has shape {head} (num_feat {head[0]})"}
    fills = [ConvFill.of(state_dict, "conv0_0", "stage0_conv0"),
             ArrayFill("stage0_1_conv", ("conv0_1.weight",), "conv0_1.weight",
                       values=[_array(state_dict, "conv0_1.weight").transpose(2, 3, 1, 0)]),
             _bn_fill(state_dict, "bn0_1", "stage0_1_bn")]
    for i in range(1, stages + 1):
        for j in (0, 1):
            key = f"conv{i}_{j}.weight"
            fills.append(ArrayFill(f"stage{i}_{j}_conv", (key,), key,
                                   values=[_array(state_dict, key).transpose(2, 3, 1, 0)]))
            fills.append(_bn_fill(state_dict, f"bn{i}_{j}", f"stage{i}_{j}_bn"))
    fills.append(_linear1(state_dict))
    fills.append(ArrayFill("output", ("linear2.weight", "linear2.bias"), "linear2.weight",
                           values=[_array(state_dict, "linear2.weight").T,
                                   _array(state_dict, "linear2.bias")]))
    counters = tuple(k for k in state_dict if str(k).endswith(f".{COUNTER}"))
    return Plan(NAME, "vgg_style_discriminator", args, fills, keys=tuple(state_dict),
                evidence=evidence, checked_keys=counters)
