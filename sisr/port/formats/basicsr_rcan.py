"""BasicSR RCAN (XPixelGroup/BasicSR, basicsr/archs/rcan_arch.py) state_dicts (`params` or
`params_ema` of its `.pth` files, as `sisr.port.io` unwraps them).

Keys: `conv_first`, `body.{g}.residual_group.{b}.rcab.{0,2}` with channel attention
`body.{g}.residual_group.{b}.rcab.3.attention.{1,3}`, `body.{g}.conv`, `conv_after_body`,
`upsample.{0,2,4}`, `conv_last`. BasicSR takes [0, 1] images and works on
`(x - mean) * img_range`; neither is in the state_dict (DIV2K mean and 255 in its configs).
"""

from sisr.port.formats.edsr_pytorch_rcan import RcanLayout, describe_rcan, rcan_keys
from sisr.port.plan import Plan, PortError

NAME = "basicsr-rcan"
ALIASES = {}
LAYOUT = RcanLayout(
    "BasicSR RCAN", "conv_first", r"body\.(\d+)\.", r"body\.{g}\.residual_group\.(\d+)\.",
    ("body.{g}.residual_group.{b}.rcab.0", "body.{g}.residual_group.{b}.rcab.2"),
    ("body.{g}.residual_group.{b}.rcab.3.attention.1",
     "body.{g}.residual_group.{b}.rcab.3.attention.3"),
    "body.{g}.conv", "conv_after_body", "upsample", "conv_last")


def expected_keys(state_dict):
    """The keys of a BasicSR RCAN as large as `state_dict` looks."""
    return rcan_keys(state_dict, LAYOUT)


def detect(state_dict):
    """True if the key set is exactly a BasicSR RCAN's."""
    try:
        return set(state_dict) == expected_keys(state_dict)
    except (PortError, TypeError):
        return False


def describe(state_dict, img_range=255.0, **options):
    """The `Plan` of a BasicSR RCAN state_dict trained with `img_range`."""
    if isinstance(img_range, bool) or not isinstance(img_range, (int, float)) \
            or not img_range > 0:
        raise PortError(f"img_range must be a positive number, got {img_range!r}")
    # BasicSR: (x / 255 - mean) * img_range = (x - 255 mean) * img_range / 255
    args, fills, evidence = describe_rcan(state_dict, LAYOUT, 255.0 / img_range)
    return Plan(NAME, "rcan", args, fills, keys=tuple(state_dict), evidence=evidence)
