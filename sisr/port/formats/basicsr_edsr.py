"""BasicSR EDSR (XPixelGroup/BasicSR, basicsr/archs/edsr_arch.py) state_dicts.

Keys: `conv_first`, `body.{i}.conv{1,2}`, `conv_after_body`, `upsample.{0,2,4}`,
`conv_last`. BasicSR takes [0, 1] images and works on `(x - mean) * img_range`; its mean
is not in the state_dict, `img_range` neither (255 in its EDSR configs).
"""

from sisr.port.plan import Plan, PortError
from sisr.port.rules import EdsrLayout, describe_edsr, edsr_keys, full_edsr_scaling

NAME = "basicsr-edsr"
ALIASES = {"basicsr": None}
LAYOUT = EdsrLayout("BasicSR EDSR", "conv_first", "body.{i}.{conv}", ("conv1", "conv2"),
                    r"body\.(\d+)\.conv", "conv_after_body", "upsample", "conv_last")


def expected_keys(state_dict):
    """The keys of a BasicSR EDSR as large as `state_dict` looks."""
    return edsr_keys(state_dict, LAYOUT)


def detect(state_dict):
    """True if the key set is exactly a BasicSR EDSR's (every BasicSR architecture has
    `conv_first`; only EDSR has nothing but these)."""
    return set(state_dict) == expected_keys(state_dict)


def describe(state_dict, img_range=255.0, **options):
    """The `Plan` of a BasicSR EDSR state_dict trained with `img_range`."""
    if isinstance(img_range, bool) or not isinstance(img_range, (int, float)) \
            or not img_range > 0:
        raise PortError(f"img_range must be a positive number, got {img_range!r}")
    # BasicSR: (x01 - mean) * img_range = (x255 - 255 mean) * img_range/255, and
    # sisr's input is (x255 - 255 mean)/127.5: biases scale by 2/img_range.
    args, fills, evidence = describe_edsr(state_dict, LAYOUT, bias_scale=2.0 / img_range)
    return Plan(NAME, "edsr", args, fills, keys=tuple(state_dict), evidence=evidence,
                assumed=full_edsr_scaling(args))
