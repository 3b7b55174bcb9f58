"""The official PyTorch modules that benchmarks/vs_pytorch.py times, loaded from their
projects' files on this machine (never copied into this repository).

Each project is a folder given on vs_pytorch.py's command line:

    --edsr DIR         EDSR-PyTorch's src/model (rcan.py, rdn.py, mdsr.py, common.py)
    --basicsr DIR      BasicSR's basicsr/archs (rrdbnet_arch.py, arch_util.py)
    --realesrgan DIR   Real-ESRGAN's realesrgan/archs (srvgg_arch.py)

The files are imported unmodified (tests/data/fixture_tools.py: stub modules stand in for
BasicSR's package `__init__`s, which the forward passes do not use). Every network is
built with its project's own initialisation after `torch.manual_seed(0)` and takes and
returns RGB on [0, 255], as sisr's models: BasicSR's and Real-ESRGAN's networks work on
[0, 1], so `Unit` divides by 255 before and multiplies by 255 after, as their inference
scripts do. Only `build` imports torch.

Run as a script (with torch), it writes one official module's weights, as built here (its
project's initialisation after `torch.manual_seed(SEED)`), to an .npz state_dict that
`sisr.port` reads, e.g. for `benchmarks/upscale.py --weights`:

    python benchmarks/official.py rrdbnet BasicSR/basicsr/archs --scale 4 -o rrdbnet-x4.npz
"""

import argparse
import os
import sys
from argparse import Namespace

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE_TOOLS = os.path.join(HERE, "..", "tests", "data")

# project -> (command-line flag, what the folder is)
PROJECTS = {
    "edsr": ("--edsr", "EDSR-PyTorch's src/model folder"),
    "basicsr": ("--basicsr", "BasicSR's basicsr/archs folder"),
    "realesrgan": ("--realesrgan", "Real-ESRGAN's realesrgan/archs folder"),
}
# factory -> (project, files of the folder it loads)
FACTORIES = {
    "rcan": ("edsr", ("common.py", "rcan.py")),
    "rdn": ("edsr", ("rdn.py",)),
    "mdsr": ("edsr", ("common.py", "mdsr.py")),
    "rrdbnet": ("basicsr", ("arch_util.py", "rrdbnet_arch.py")),
    "srvgg": ("realesrgan", ("srvgg_arch.py",)),
}


def missing_files(factory, directory):
    """The files `factory` needs that `directory` lacks (empty: it can be loaded)."""
    return [f for f in FACTORIES[factory][1]
            if not os.path.isfile(os.path.join(directory, f))]


def _tools():
    if FIXTURE_TOOLS not in sys.path:
        sys.path.insert(0, FIXTURE_TOOLS)
    import fixture_tools

    return fixture_tools


def _edsr_module(directory, name):
    """EDSR-PyTorch's `model.<name>` (its files do `from model import common`)."""
    parent = os.path.dirname(os.path.abspath(directory))
    if parent not in sys.path:
        sys.path.insert(0, parent)
    return _tools().load_module(f"model.{name}", os.path.join(directory, f"{name}.py"))


def _unit(net):
    """`net` (on [0, 1]) as a module on [0, 255]."""
    import torch

    class Unit(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x / 255.0) * 255.0

    return Unit()


def rcan(directory, scale, n_resgroups=10, n_resblocks=20, n_feats=64, reduction=16):
    """EDSR-PyTorch's RCAN at its published rgb_range 255."""
    module = _edsr_module(directory, "rcan")
    return module.RCAN(Namespace(n_resgroups=n_resgroups, n_resblocks=n_resblocks,
                                 n_feats=n_feats, reduction=reduction, scale=[scale],
                                 rgb_range=255, n_colors=3, res_scale=1.0))


def rdn(directory, scale, config="B", G0=64):
    """EDSR-PyTorch's RDN (configuration "A" or "B")."""
    module = _edsr_module(directory, "rdn")
    return module.RDN(Namespace(scale=[scale], G0=G0, RDNkSize=3, RDNconfig=config,
                                n_colors=3))


def mdsr(directory, scale, n_feats=64, n_resblocks=16, scales=(2, 3, 4)):
    """EDSR-PyTorch's MDSR with branches `scales` (one network), set to `scale`'s branch."""
    module = _edsr_module(directory, "mdsr")
    net = module.MDSR(Namespace(n_feats=n_feats, n_resblocks=n_resblocks, rgb_range=255,
                                n_colors=3, scale=list(scales)))
    net.set_scale(list(scales).index(scale))
    return net


def rrdbnet(directory, scale, num_feat=64, num_block=23, num_grow_ch=32):
    """BasicSR's RRDBNet (ESRGAN / Real-ESRGAN x4plus at the defaults), on [0, 255]."""
    tools = _tools()
    tools.stub_basicsr()
    tools.load_module("basicsr.archs.arch_util", os.path.join(directory, "arch_util.py"))
    module = tools.load_module("basicsr.archs.rrdbnet_arch",
                               os.path.join(directory, "rrdbnet_arch.py"))
    return _unit(module.RRDBNet(num_in_ch=3, num_out_ch=3, scale=scale, num_feat=num_feat,
                                num_block=num_block, num_grow_ch=num_grow_ch))


def srvgg(directory, scale, num_feat=64, num_conv=32, act_type="prelu"):
    """Real-ESRGAN's SRVGGNetCompact (realesr-general-x4v3 at the defaults), on [0, 255]."""
    tools = _tools()
    tools.stub_basicsr()
    module = tools.load_module("srvgg_arch", os.path.join(directory, "srvgg_arch.py"))
    return _unit(module.SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=num_feat,
                                        num_conv=num_conv, upscale=scale,
                                        act_type=act_type))


def build(factory, directory, **arguments):
    """The official module of `factory` from `directory` (raises FileNotFoundError naming
    the missing files)."""
    missing = missing_files(factory, directory)
    if missing:
        raise FileNotFoundError(f"{directory}: no {', '.join(missing)}")
    return globals()[factory](directory, **arguments)


def state_dict(net):
    """The state_dict of an official module as float32 NumPy arrays, with its own key names
    (`Unit`'s wrapper prefix removed), as `sisr.port` reads a checkpoint."""
    import numpy as np

    state = {k: v.detach().cpu().numpy().astype(np.float32)
             for k, v in net.state_dict().items()}
    if all(k.startswith("net.") for k in state):
        state = {k[len("net."):]: v for k, v in state.items()}
    return state


def main(argv=None):
    p = argparse.ArgumentParser(prog="python benchmarks/official.py",
                                description="Writes an official module's seeded weights "
                                            "(.npz state_dict).")
    p.add_argument("factory", choices=sorted(FACTORIES))
    p.add_argument("directory", help="the project's folder (see this file's docstring)")
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed (default 0)")
    p.add_argument("-o", "--output", required=True, help=".npz file to write")
    args = p.parse_args(argv)
    missing = missing_files(args.factory, args.directory)
    if missing:
        p.error(f"directory: {args.directory} has no {', '.join(missing)}")
    import numpy as np
    import torch

    torch.manual_seed(args.seed)
    state = state_dict(build(args.factory, args.directory, scale=args.scale))
    np.savez(args.output, **state)
    print(f"{args.output}: {len(state)} arrays, "
          f"{sum(v.size for v in state.values())} values", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
