"""Makes tests/data/degradations/basicsr.npz from BasicSR's own degradation code.

    /work/venvs/degrade/bin/python tests/data/make_degradation_fixtures.py \
        BASICSR_DIR tests/data/degradations/basicsr.npz

BASICSR_DIR is a BasicSR checkout (its `basicsr/data/degradations.py` and
`basicsr/utils/img_process_util.py` are imported from there, not copied). Needs numpy,
scipy and opencv-python-headless; torch and torchvision are imported by those modules
but not used by the functions called here, so empty stand-ins are installed for them.
The draws are fixed below (no random state), the test image is the demo photograph
`sisr/data/demo/<DEMO>` cropped at its top-left corner.
"""

import importlib.util
import sys
import types

import cv2
import numpy as np
import scipy.stats  # noqa: F401  (before the torch stand-in: scipy probes a real torch)

DEMO = "train_coffee.png"
CROP = 64
# (name, kernel type, support, sigma_x, sigma_y, theta, beta, cutoff)
KERNELS = [
    ("iso", 7, 1.3, 1.3, 0.0, 1.0, 0.0),
    ("iso", 21, 2.9, 2.9, 0.0, 1.0, 0.0),
    ("aniso", 13, 0.7, 2.6, 0.6, 1.0, 0.0),
    ("aniso", 21, 3.0, 0.4, -2.1, 1.0, 0.0),
    ("generalized_iso", 15, 1.8, 1.8, 0.0, 0.6, 0.0),
    ("generalized_aniso", 21, 2.2, 1.1, 1.0, 3.5, 0.0),
    ("plateau_iso", 9, 1.5, 1.5, 0.0, 1.4, 0.0),
    ("plateau_aniso", 19, 2.7, 0.9, -0.3, 1.9, 0.0),
    ("sinc", 7, 0.0, 0.0, 0.0, 0.0, 2.2),
    ("sinc", 21, 0.0, 0.0, 0.0, 0.0, 0.9),
]
QUALITIES = (30, 60, 95)
SIZE = 21


def _stub(name):
    module = types.ModuleType(name)
    module.__path__ = []
    sys.modules[name] = module
    return module


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(basicsr_dir, out, demo_dir="sisr/data/demo"):
    torch = _stub("torch")
    torch.nn = _stub("torch.nn")
    torch.nn.Module = object
    torch.nn.functional = _stub("torch.nn.functional")
    _stub("torchvision")
    _stub("torchvision.transforms")
    functional = _stub("torchvision.transforms.functional")
    functional.rgb_to_grayscale = None
    deg = _load(f"{basicsr_dir}/basicsr/data/degradations.py", "degradations")
    util = _load(f"{basicsr_dir}/basicsr/utils/img_process_util.py", "img_process_util")

    kernels, params = [], []
    for kind, k, sx, sy, theta, beta, cutoff in KERNELS:
        iso = kind.endswith("_iso") or kind == "iso"
        if kind == "sinc":
            kernel = deg.circular_lowpass_kernel(cutoff, k, pad_to=0)
        elif kind.startswith("generalized"):
            kernel = deg.bivariate_generalized_Gaussian(k, sx, sy, theta, beta, isotropic=iso)
        elif kind.startswith("plateau"):
            kernel = deg.bivariate_plateau(k, sx, sy, theta, beta, isotropic=iso)
        else:
            kernel = deg.bivariate_Gaussian(k, sx, sy, theta, isotropic=iso)
        pad = (SIZE - k) // 2
        kernels.append(np.pad(kernel, pad))
        shape = {"iso": 0, "ani": 0, "gen": 1, "pla": 2, "sin": 3}[kind[:3]]
        params.append([shape, k, sx, sy if not iso else sx, theta if not iso else 0.0,
                       beta, cutoff])

    rgb = cv2.cvtColor(cv2.imread(f"{demo_dir}/{DEMO}"), cv2.COLOR_BGR2RGB)[:CROP, :CROP]
    image = rgb.astype(np.float32) / 255.0
    jpegs = []
    for quality in QUALITIES:
        # add_jpg_compression works on OpenCV's BGR order: give it BGR, return RGB.
        coded = deg.add_jpg_compression(image[:, :, ::-1].copy(), quality)
        jpegs.append(np.round(coded[:, :, ::-1] * 255.0).astype(np.uint8))
    usm = util.usm_sharp(image[:, :, ::-1].copy())[:, :, ::-1]
    resized = [cv2.resize(image, (CROP // 4, CROP // 4), interpolation=mode)
               for mode in (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC)]
    np.savez_compressed(out, kernels=np.array(kernels, np.float64),
                        kernel_params=np.array(params, np.float64), image=rgb,
                        jpeg_qualities=np.array(QUALITIES), jpeg=np.array(jpegs),
                        usm=usm.astype(np.float32), resized=np.array(resized, np.float32))
    print(f"wrote {out}: {len(kernels)} kernels, {len(QUALITIES)} JPEGs, USM, 3 resizes "
          f"")


if __name__ == "__main__":
    main(*sys.argv[1:])
