"""A rebuild (not the official code) of the official EDSR and WDSR modules in PyTorch, for
tests and benchmarks that have torch.

Same module structure, parameter names (state_dict keys) and default initialisation as
EDSR-PyTorch (src/model/edsr.py, common.py) and the official WDSR (JiahuiYu/wdsr_ntire2018
wdsr_a.py, wdsr_b.py, legacy `torch.nn.utils.weight_norm`). It imports nothing from sisr.
`tests/test_training_fidelity.py` (optional torch extra) checks it against the fixtures
that the official code made (tests/data/compact/, tests/data/training/): same outputs,
same training steps. torch is imported when a module is built, so importing this file
never needs it.
"""

import warnings

# EDSR-PyTorch's MeanShift default / the official WDSR's r_mean, g_mean, b_mean (DIV2K),
# on the 0..255 scale
DIV2K_RGB_MEAN = (0.4488 * 255.0, 0.4371 * 255.0, 0.4040 * 255.0)


def stages(scale):
    """Pixel-shuffle factors of EDSR's upsampler."""
    return {2: [2], 3: [3], 4: [2, 2], 8: [2, 2, 2]}[scale]


def edsr(scale, feats, blocks, res_scale=1.0, rgb_range=255):
    """EDSR-PyTorch's EDSR for images on [0, rgb_range] (its `--rgb_range`).

    sub_mean / add_mean are 1x1 convs holding +-rgb_range x the DIV2K mean, frozen
    (`requires_grad=False`) as in EDSR-PyTorch's MeanShift.
    """
    import torch

    nn = torch.nn

    class ResBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(feats, feats, 3, padding=1), nn.ReLU(True),
                                      nn.Conv2d(feats, feats, 3, padding=1))

        def forward(self, x):
            return self.body(x).mul(res_scale) + x

    class EDSR(nn.Module):
        def __init__(self):
            super().__init__()
            mean = torch.tensor(DIV2K_RGB_MEAN, dtype=torch.float32) * (rgb_range / 255.0)
            self.sub_mean, self.add_mean = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)
            for conv, sign in ((self.sub_mean, -1), (self.add_mean, 1)):
                conv.weight.data = torch.eye(3).view(3, 3, 1, 1)
                conv.bias.data = sign * mean
                for p in conv.parameters():
                    p.requires_grad = False
            self.head = nn.Sequential(nn.Conv2d(3, feats, 3, padding=1))
            self.body = nn.Sequential(*[ResBlock() for _ in range(blocks)],
                                      nn.Conv2d(feats, feats, 3, padding=1))
            up = []
            for r in stages(scale):
                up += [nn.Conv2d(feats, feats * r * r, 3, padding=1), nn.PixelShuffle(r)]
            self.tail = nn.Sequential(nn.Sequential(*up), nn.Conv2d(feats, 3, 3, padding=1))

        def forward(self, x):
            x = self.head(self.sub_mean(x))
            return self.add_mean(self.tail(self.body(x) + x))

    return EDSR()


def wdsr(variant, scale, feats, blocks, expansion, res_scale=1.0):
    """The official WDSR-A ("a") or WDSR-B ("b") on [0, 255], with legacy weight norm.

    As in the official code, every conv is `weight_norm(nn.Conv2d(...))` with PyTorch's
    default init, so g = ||v|| at the start. WDSR-B's low-rank width is int(0.8 feats).
    """
    import torch

    nn = torch.nn

    def wn(module):
        with warnings.catch_warnings():  # legacy weight_norm, as in the official code
            warnings.simplefilter("ignore")
            return torch.nn.utils.weight_norm(module)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            wide = feats * expansion
            if variant == "a":
                body = [wn(nn.Conv2d(feats, wide, 3, padding=1)), nn.ReLU(True),
                        wn(nn.Conv2d(wide, feats, 3, padding=1))]
            else:
                linear = int(feats * 0.8)
                body = [wn(nn.Conv2d(feats, wide, 1)), nn.ReLU(True),
                        wn(nn.Conv2d(wide, linear, 1)),
                        wn(nn.Conv2d(linear, feats, 3, padding=1))]
            self.body = nn.Sequential(*body)

        def forward(self, x):
            return self.body(x) * res_scale + x

    class WDSR(nn.Module):
        def __init__(self):
            super().__init__()
            out = 3 * scale * scale
            self.head = nn.Sequential(wn(nn.Conv2d(3, feats, 3, padding=1)))
            self.body = nn.Sequential(*[Block() for _ in range(blocks)])
            self.tail = nn.Sequential(wn(nn.Conv2d(feats, out, 3, padding=1)),
                                      nn.PixelShuffle(scale))
            self.skip = nn.Sequential(wn(nn.Conv2d(3, out, 5, padding=2)),
                                      nn.PixelShuffle(scale))
            self.register_buffer(
                "rgb_mean",
                torch.tensor(DIV2K_RGB_MEAN, dtype=torch.float32).view(1, 3, 1, 1),
                persistent=False)

        def forward(self, x):
            x = (x - self.rgb_mean) / 127.5
            s = self.skip(x)
            x = self.tail(self.body(self.head(x))) + s
            return x * 127.5 + self.rgb_mean

    return WDSR()


def state_dict_numpy(module):
    """The module's state_dict as float32 NumPy arrays (what `sisr.port.port` takes)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}
