"""The original ESRGAN code's RRDBNet (xinntao/ESRGAN, RRDBNet_arch.py) state_dicts:
`RRDB_ESRGAN_x4.pth`, `RRDB_PSNR_x4.pth` and models trained with that code.

Keys (the names before BasicSR renamed them): `conv_first`,
`RRDB_trunk.{i}.RDB{1,2,3}.conv{1..5}`, `trunk_conv`, `upconv1`, `upconv2`, `HRconv`,
`conv_last`. Always x4 (that code has no pixel-unshuffled x2). Same network as BasicSR's
RRDBNet, on [0, 1].
"""

from sisr.port.formats.basicsr_rrdb import RrdbLayout, describe_rrdb, rrdb_keys
from sisr.port.rules import indices

NAME = "esrgan-old"
ALIASES = {"esrgan": None}
LAYOUT = RrdbLayout("ESRGAN RRDBNet", "conv_first", "RRDB_trunk.{i}.RDB{j}.conv{k}",
                    r"RRDB_trunk\.(\d+)\.RDB", "trunk_conv", "upconv1", "upconv2", "HRconv",
                    "conv_last")


def expected_keys(state_dict):
    """The keys of an original ESRGAN RRDBNet as large as `state_dict` looks."""
    return rrdb_keys(state_dict, LAYOUT)


def detect(state_dict):
    """True if the key set is exactly an original ESRGAN RRDBNet's."""
    return bool(indices(state_dict, LAYOUT.pattern)) and \
        set(state_dict) == expected_keys(state_dict)


def describe(state_dict, **options):
    """The `Plan` of an original ESRGAN RRDBNet state_dict."""
    return describe_rrdb(state_dict, LAYOUT, NAME, scales=(4,))
