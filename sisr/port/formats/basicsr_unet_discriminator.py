"""BasicSR's `UNetDiscriminatorSN` (basicsr/archs/discriminator_arch.py) state_dicts: the
discriminator of Real-ESRGAN (its published `RealESRGAN_x4plus_netD.pth`, BasicSR's
`net_d_*.pth`).

Keys: `conv0.{weight,bias}`; `conv1` ... `conv8` spectrally normalised by
`torch.nn.utils.spectral_norm` (`weight_orig`, and the power iteration's `weight_u`,
`weight_v`; no bias); `conv9.{weight,bias}`. `skip_connection` is not stored (assumed
True, BasicSR's default and Real-ESRGAN's setting). The network works on [0, 1], as the
sisr model does inside: weights are copied unscaled, u and v as they are.
"""

import numpy as np

from sisr.port.plan import ArrayFill, Plan, PortError
from sisr.port.rules import ConvFill, conv_shape

NAME = "basicsr-unet-discriminator"
ALIASES = {"realesrgan-netd": None}
PARAM_KEYS = ("params",)
SN_CONVS = tuple(range(1, 9))
# BasicSR module -> sisr layer (sisr.model.unet_discriminator).
LAYERS = {0: "conv0", 1: "down1_conv", 2: "down2_conv", 3: "down3_conv", 4: "up1_conv",
          5: "up2_conv", 6: "up3_conv", 7: "extra1_conv", 8: "extra2_conv", 9: "output"}
SN_KEYS = ("weight_orig", "weight_u", "weight_v")


def expected_keys(state_dict=None):
    """The keys of every UNetDiscriminatorSN (its size is in the shapes, not the keys)."""
    keys = {"conv0.weight", "conv0.bias", "conv9.weight", "conv9.bias"}
    return keys | {f"conv{i}.{k}" for i in SN_CONVS for k in SN_KEYS}


def detect(state_dict):
    """True if the key set is exactly a UNetDiscriminatorSN's."""
    return set(state_dict) == expected_keys()


def _sn_fill(state_dict, i):
    prefix = f"conv{i}"
    weight = np.asarray(state_dict[f"{prefix}.weight_orig"], np.float32)
    u = np.asarray(state_dict[f"{prefix}.weight_u"], np.float32)
    v = np.asarray(state_dict[f"{prefix}.weight_v"], np.float32)
    if weight.ndim != 4 or u.shape != (weight.shape[0],) \
            or v.shape != (int(np.prod(weight.shape[1:])),):
        raise PortError(f"{prefix}.weight_orig {weight.shape}, weight_u {u.shape}, weight_v "
                        f"{v.shape}: not a spectrally normalised conv (u: out channels, v: "
                        "in x kh x kw)")
    return ArrayFill(LAYERS[i], tuple(f"{prefix}.{k}" for k in SN_KEYS),
                     f"{prefix}.weight_orig has shape {weight.shape} (OIHW)",
                     values=[weight.transpose(2, 3, 1, 0), u, v])


def describe(state_dict, **options):
    """The `Plan` of a UNetDiscriminatorSN state_dict."""
    missing = sorted(expected_keys() - set(state_dict))
    if missing:
        raise PortError(f"not a UNetDiscriminatorSN state_dict: missing {', '.join(missing)}")
    head = conv_shape(state_dict, "conv0")
    args = {"num_in_ch": head[1], "num_feat": head[0]}
    evidence = {"num_in_ch": f"conv0.weight has shape {head} (num_in_ch {head[1]})",
                "num_feat": f"conv0.weight has shape {head} (num_feat {head[0]})"}
    fills = [ConvFill.of(state_dict, "conv0", LAYERS[0])]
    fills += [_sn_fill(state_dict, i) for i in SN_CONVS]
    fills.append(ConvFill.of(state_dict, "conv9", LAYERS[9]))
    assumed = {"skip_connection": (True, "BasicSR's default and Real-ESRGAN's setting")}
    return Plan(NAME, "unet_discriminator_sn", args, fills, keys=tuple(state_dict),
                evidence=evidence, assumed=assumed)
