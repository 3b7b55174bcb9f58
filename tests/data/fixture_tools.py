"""Helpers shared by the fixture generators in this folder (make_*_fixtures.py).

A generator run as a script has this folder as sys.path[0], so `import fixture_tools`
works from any working directory. torch is imported inside the functions that need it:
make_isr_fixtures.py runs in a TensorFlow-only environment.
"""

import hashlib
import importlib.util
import json
import sys
import types

import numpy as np


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load_module(name, path, source=None):
    """The file at `path` imported as `name`; `source` replaces its text when given."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if source is None:
        spec.loader.exec_module(module)
    else:
        exec(compile(source, path, "exec"), module.__dict__)
    return module


def stub(name, **attrs):
    """An empty package `name` (with `attrs`) in sys.modules, standing in for the real one."""
    module = types.ModuleType(name)
    module.__path__ = []
    module.__dict__.update(attrs)
    sys.modules[name] = module


class Registry:
    """BasicSR's ARCH_REGISTRY / LOSS_REGISTRY as its files use them: `register()` (or
    `register(suffix=...)`) as a decorator."""

    def register(self, obj=None, suffix=None):
        return obj if obj is not None else (lambda o: o)


def stub_basicsr():
    """Stubs for what BasicSR's package `__init__`s pull in (training dependencies, DCN,
    torchvision), none of which the arch files' forward passes use."""
    import torch

    stub("torchvision")
    stub("basicsr")
    stub("basicsr.archs")
    stub("basicsr.ops")
    stub("basicsr.ops.dcn", ModulatedDeformConvPack=torch.nn.Module,
         modulated_deform_conv=None)
    stub("basicsr.utils", get_root_logger=None)
    stub("basicsr.utils.registry", ARCH_REGISTRY=Registry(), LOSS_REGISTRY=Registry())


def stand_in_vgg19(seed):
    """Random VGG19 conv weights, the same in the PyTorch generator and the Keras tests:
    [(keras layer name, kernel (3, 3, in, out), bias)] for the 16 convs in order, He-normal
    kernels (activations keep their scale through the 16 ReLU layers) and N(0, 0.05^2)
    biases, float32, from NumPy's default_rng(seed). Neither side downloads ImageNet
    weights: a 20-million-parameter fixture need not be stored."""
    rng = np.random.default_rng(seed)
    convs, channels = [], 3
    for block, (filters, count) in enumerate(((64, 2), (128, 2), (256, 4), (512, 4),
                                              (512, 4)), start=1):
        for i in range(1, count + 1):
            std = np.sqrt(2.0 / (9 * channels))
            kernel = (rng.standard_normal((3, 3, channels, filters), np.float32)
                      * np.float32(std))
            bias = rng.standard_normal(filters, np.float32) * np.float32(0.05)
            convs.append((f"block{block}_conv{i}", kernel, bias))
            channels = filters
    return convs


def state(module):
    """A torch module's state_dict as float32 NumPy arrays."""
    return {k: v.detach().cpu().numpy().astype(np.float32).copy()
            for k, v in module.state_dict().items()}


def adam(params, lr):
    """EDSR-PyTorch's optimiser: Adam with its default betas and eps."""
    import torch

    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)


def l1_step(module, optimizer, x, hr):
    """One official training step (zero_grad, L1 on the 0..255 scale, backward, step) on
    NumPy NCHW batches; returns the loss."""
    import torch

    optimizer.zero_grad()
    sr = module(torch.from_numpy(x.astype(np.float32)))
    loss = torch.nn.functional.l1_loss(sr, torch.from_numpy(hr.astype(np.float32)))
    loss.backward()
    optimizer.step()
    return loss.item()


def write_json(path, obj):
    """A manifest as every generator writes it: indent 1, a final newline."""
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
