"""Makes tests/data/degradations/bsrgan.npz from BSRGAN's own degradation code.

    /work/venvs/bsrgan/bin/python tests/data/make_bsrgan_fixtures.py \
        BSRGAN_DIR tests/data/degradations

BSRGAN_DIR is a checkout of cszn/BSRGAN; its `utils/utils_blindsr.py` (and the
`utils/utils_image.py` it imports) are loaded from there, not copied. Needs numpy 1.26,
scipy 1.11 (BSRGAN calls `scipy.interpolate.interp2d` and `scipy.finfo`, both gone from
later SciPy) and opencv-python-headless; torch, torchvision and matplotlib are imported
by those modules but not used by the functions called here, so empty stand-ins are
installed for them. Also adds the file's entry (with its provenance) to the folder's
manifest.json.

Every random draw is seeded (SEED below): BSRGAN's functions draw from Python's `random`
and NumPy's global generator; a recorder stands in for its `random` module and logs each
draw, and NumPy's draws are made again from the same seed to store them. The test image
is the demo photograph `sisr/data/demo/<DEMO>`, cropped at its top-left corner.
"""

import json
import os
import random
import sys

import cv2
import numpy as np
import scipy
import scipy.ndimage

import fixture_tools as tools

DEMO = "train_coffee.png"
CROP = 64
BLUR_CROP = 48
SEED = 22
# (ksize, theta, l1, l2) of anisotropic_Gaussian, (hsize, sigma) of fspecial_gaussian
ANISO = [(7, 0.3, 1.2, 5.0), (15, 2.0, 7.5, 0.4), (25, 1.1, 3.3, 3.0), (11, 3.0, 0.2, 0.9)]
ISO = [(7, 0.4), (13, 1.7), (25, 2.8)]
# Downsampling: (factor drawn U(1, 2 sf), cv2 interpolation 1 linear 2 cubic 3 area)
RESIZES = [(1.3, 1), (2.7, 2), (5.9, 3), (3.1, 2), (1.6, 3)]
# Blur + nearest: (sf, sigma drawn U(0.1, 0.6 sf))
SHIFTED = [(4, 0.1), (4, 1.9), (2, 0.7), (2, 1.2), (3, 1.0)]


class Recorder:
    """Python's `random` as BSRGAN's module calls it, seeded, logging every draw."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.log = []

    def __getattr__(self, name):
        method = getattr(self.rng, name)

        def draw(*args):
            value = method(*args)
            self.log.append(value)
            return value
        return draw


def _load(bsrgan_dir):
    for name in ("torch", "torchvision", "matplotlib", "mpl_toolkits", "utils"):
        tools.stub(name)
    tools.stub("torchvision.utils", make_grid=None)
    tools.stub("matplotlib.pyplot")
    tools.stub("mpl_toolkits.mplot3d", Axes3D=None)
    util = tools.load_module("utils.utils_image", f"{bsrgan_dir}/utils/utils_image.py")
    sys.modules["utils"].utils_image = util
    return tools.load_module("utils_blindsr", f"{bsrgan_dir}/utils/utils_blindsr.py")


def _blurs(blindsr, image):
    """add_blur of `image` for seeds giving each kernel (anisotropic, isotropic) at sf 4
    and 2, with its logged draws (padded to 5 with -1)."""
    outputs, draws, factors = [], [], []
    seed = SEED
    for sf in (4, 2):
        for aniso in (True, False):
            while True:
                seed += 1
                if (random.Random(seed).random() < 0.5) == aniso:
                    break
            blindsr.random = Recorder(seed)
            outputs.append(blindsr.add_blur(image.copy(), sf=sf).astype(np.float32))
            log = blindsr.random.log
            draws.append(log + [-1] * (5 - len(log)))
            factors.append(sf)
    return np.array(outputs), np.array(draws, np.float64), np.array(factors)


def _noises(blindsr):
    """add_Gaussian_noise on a flat grey image, for seeds giving each kind of noise: its
    output, the draws (level, kind, and the normal / uniform samples) and, for the
    channel-correlated noise, the covariance BSRGAN passes to multivariate_normal."""
    flat = {"colour": np.full((32, 32, 3), 0.5, np.float32),
            "gray": np.full((32, 32, 3), 0.5, np.float32),
            "correlated": np.full((CROP, CROP, 3), 0.5, np.float32)}
    captured = {}
    real = np.random.multivariate_normal

    def spy(mean, cov, size):
        captured["cov"] = np.array(cov, np.float64)
        return real(mean, cov, size)

    out, wanted = {}, {"colour": lambda r: r > 0.6, "gray": lambda r: r < 0.4,
                       "correlated": lambda r: 0.4 <= r <= 0.6}
    seed = SEED
    while len(out) < 3:
        seed += 1
        np.random.seed(seed)
        kind = np.random.rand()
        name = next(n for n, test in wanted.items() if test(kind))
        if name in out:
            continue
        blindsr.random = Recorder(seed)
        np.random.seed(seed)
        np.random.multivariate_normal = spy
        try:
            noisy = blindsr.add_Gaussian_noise(flat[name].copy(), noise_level1=2, noise_level2=25)
        finally:
            np.random.multivariate_normal = real
        # The same NumPy draws again, in the order BSRGAN's function makes them.
        np.random.seed(seed)
        entry = {"output": noisy, "level": np.array(blindsr.random.log[0]),
                 "kind": np.array(np.random.rand())}
        if name == "colour":
            entry["z"] = np.random.standard_normal(flat[name].shape)
        elif name == "gray":
            entry["z"] = np.random.standard_normal((32, 32, 1))
        else:
            entry["d"] = np.random.rand(3)
            entry["a"] = np.random.rand(3, 3)
            entry["z"] = np.random.standard_normal(flat[name].shape)
            entry["cov"] = captured["cov"]
        entry["z"] = entry["z"].astype(np.float32)  # stored small; BSRGAN's noise is float32
        out[name] = entry
    return {f"noise_{name}_{key}": value for name, entry in out.items()
            for key, value in entry.items()}


def main(bsrgan_dir, out_dir, demo_dir="sisr/data/demo"):
    blindsr = _load(bsrgan_dir)
    rgb = cv2.cvtColor(cv2.imread(f"{demo_dir}/{DEMO}"), cv2.COLOR_BGR2RGB)[:CROP, :CROP]
    image = rgb.astype(np.float32) / 255.0

    aniso = [blindsr.anisotropic_Gaussian(ksize=k, theta=t, l1=a, l2=b)
             for k, t, a, b in ANISO]
    iso = [blindsr.fspecial("gaussian", k, s) for k, s in ISO]
    blurred, blur_draws, blur_factors = _blurs(blindsr, image[:BLUR_CROP, :BLUR_CROP])
    # The downsampling step's two branches, run as degradation_bsrgan runs them (its
    # lines are inline there): cv2.resize to int(size / factor) then clip; or
    # fspecial + shift_pixel + normalise, ndimage.convolve(mode='mirror'), [0::sf, 0::sf].
    resized = [np.clip(cv2.resize(image, (int(1 / f * CROP), int(1 / f * CROP)),
                                  interpolation=mode), 0.0, 1.0) for f, mode in RESIZES]
    shifted_kernels, nearest = [], []
    for sf, sigma in SHIFTED:
        k = blindsr.shift_pixel(blindsr.fspecial("gaussian", 25, sigma), sf)
        k = k / k.sum()
        shifted_kernels.append(k)
        blur = scipy.ndimage.convolve(image, np.expand_dims(k, axis=2), mode="mirror")
        nearest.append(np.clip(blur[0::sf, 0::sf, ...], 0.0, 1.0))
    blindsr.random = Recorder(SEED)
    jpeg = blindsr.add_JPEG_noise(image.copy())
    quality = blindsr.random.log[0]

    arrays = {
        "image": rgb, "aniso_params": np.array(ANISO, np.float64),
        "aniso_kernels": np.array([np.pad(k, (25 - k.shape[0]) // 2) for k in aniso]),
        "iso_params": np.array(ISO, np.float64),
        "iso_kernels": np.array([np.pad(k, (25 - k.shape[0]) // 2) for k in iso]),
        "blur_outputs": blurred, "blur_draws": blur_draws, "blur_factors": blur_factors,
        "resize_params": np.array(RESIZES, np.float64),
        **{f"resized_{i}": r.astype(np.float32) for i, r in enumerate(resized)},
        "shifted_params": np.array(SHIFTED, np.float64),
        "shifted_kernels": np.array(shifted_kernels),
        **{f"nearest_{i}": n.astype(np.float32) for i, n in enumerate(nearest)},
        "jpeg": np.round(jpeg * 255.0).astype(np.uint8), "jpeg_quality": np.array(quality),
        **_noises(blindsr),
    }
    path = os.path.join(out_dir, "bsrgan.npz")
    np.savez_compressed(path, **arrays)

    manifest_path = os.path.join(out_dir, "manifest.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest["files"]["bsrgan.npz"] = {
        "generator": "tests/data/make_bsrgan_fixtures.py",
        "seed": SEED,
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__,
                     "scipy": scipy.__version__, "opencv-python-headless": cv2.__version__},
        "upstream": "cszn/BSRGAN 5ce1a9c6ae292f30ccfce4b597ecb73c70401733 "
                    "utils/utils_blindsr.py (utils/utils_image.py imported by it)",
        "upstream_file_sha256": {
            "BSRGAN/utils/utils_blindsr.py": tools.sha256(
                f"{bsrgan_dir}/utils/utils_blindsr.py"),
            "BSRGAN/utils/utils_image.py": tools.sha256(f"{bsrgan_dir}/utils/utils_image.py"),
        },
        "contents": {
            "image": f"{CROP}x{CROP} top-left crop of sisr/data/demo/{DEMO} (uint8 RGB)",
            "aniso_kernels": "anisotropic_Gaussian(ksize, theta, l1, l2) for aniso_params, "
                             "zero-padded to 25x25",
            "iso_kernels": "fspecial('gaussian', hsize, sigma) for iso_params, padded to 25",
            "blur_outputs": f"add_blur(image[:{BLUR_CROP}, :{BLUR_CROP}] / 255, sf) for "
                            "blur_factors, each with a Python random.Random(seed) giving "
                            "each kernel type; blur_draws its draws in call order "
                            "(padded with -1)",
            "resized_<i>": "cv2.resize(image / 255, int(64 / factor)) at resize_params "
                           "(factor, interpolation), clipped: degradation_bsrgan's "
                           "random-interpolation downsampling",
            "shifted_kernels": "shift_pixel(fspecial('gaussian', 25, sigma), sf), "
                               "normalised, for shifted_params (sf, sigma)",
            "nearest_<i>": "ndimage.convolve(image / 255, that kernel, mode='mirror')"
                           "[0::sf, 0::sf], clipped: its blur + nearest downsampling",
            "jpeg": "add_JPEG_noise(image / 255) with random.Random(seed), "
                    "quality jpeg_quality (uint8 RGB)",
            "noise_<kind>_*": "add_Gaussian_noise(0.5 flat image, 2, 25) for a seed giving "
                              "each kind (colour, gray: 32x32, correlated: 64x64): output, "
                              "level, kind "
                              "(np.random.rand), z (the standard normal draws), d and a "
                              "(np.random.rand(3), rand(3, 3)), cov (the covariance passed "
                              "to np.random.multivariate_normal)",
        },
        "sha256": tools.sha256(path),
    }
    tools.write_json(manifest_path, manifest)
    print(f"wrote {path} and its manifest entry")


if __name__ == "__main__":
    main(*sys.argv[1:])
