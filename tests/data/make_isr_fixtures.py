"""Makes tests/data/isr/ by running idealo ISR's own RDN (ISR/models/rdn.py, Apache-2.0).

Needs TensorFlow 2.15 (the tf.keras 2 that ISR was written for, whose `save_weights`
writes the HDF5 layout of ISR's published `.hdf5` files) and the upstream files, fetched
separately and never copied into this project:

    python3.11 -m venv /tmp/isr && /tmp/isr/bin/pip install "tensorflow-cpu==2.15.*"
    /tmp/isr/bin/python tests/data/make_isr_fixtures.py --isr image-super-resolution \
        [--out DIR]  # tests/data/isr by default

It imports neither sisr nor torch. `ISR/models/rdn.py` and `ISR/models/imagemodel.py` are
loaded as files, unmodified (stub modules stand in for the `ISR` and `ISR.models` package
`__init__`s, which import ISR's training code). For each configuration: `RDN(arch_params,
upscaling=...)` with its own init (kernels U(-0.05, 0.05), biases zero), every bias then
set to N(0, 0.05) and every kernel scaled by (1 + 0.2 N(0, 1)), so that no default value
is left; `model.save_weights("<stem>.hdf5")`; its output for an input image as ISR's
`predict` computes it before rounding: `model.predict(x / 255)` (on [0, 1], unclipped).
`reference.npz`: `<stem>__x` the (1, H, W, 3) input, integers 0..255 (float32), and
`<stem>__y` that output (float32, NHWC).
"""

import argparse
import os
import sys

import numpy as np
import tensorflow as tf
from fixture_tools import load_module, sha256, stub, write_json

SEED = 20
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "isr")
CONFIGS = {  # stem: (arch_params, upscaling)
    "rdn_C2_D3_G4_G08_x2": ({"C": 2, "D": 3, "G": 4, "G0": 8, "x": 2}, "ups"),
    "rdn_C3_D2_G4_G08_x3": ({"C": 3, "D": 2, "G": 4, "G0": 8, "x": 3}, "ups"),
    "rdn_C2_D2_G4_G08_x2_shuffle": ({"C": 2, "D": 2, "G": 4, "G0": 8, "x": 2}, "shuffle"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isr", required=True, help="an image-super-resolution checkout")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    for name in ("ISR", "ISR.models", "ISR.utils"):
        stub(name)
    load_module("ISR.utils.image_processing",
                os.path.join(args.isr, "ISR", "utils", "image_processing.py"))
    load_module("ISR.models.imagemodel", os.path.join(args.isr, "ISR", "models", "imagemodel.py"))
    rdn = load_module("ISR.models.rdn", os.path.join(args.isr, "ISR", "models", "rdn.py"))

    out = args.out
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(SEED)
    tf.keras.utils.set_random_seed(SEED)
    arrays, files = {}, {}
    for stem, (arch_params, upscaling) in CONFIGS.items():
        network = rdn.RDN(arch_params=arch_params, upscaling=upscaling)
        model = network.model
        for layer in model.layers:
            if layer.weights:
                kernel, bias = layer.get_weights()
                kernel = kernel * (1 + 0.2 * rng.standard_normal(kernel.shape))
                bias = 0.05 * rng.standard_normal(bias.shape)
                layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
        path = os.path.join(out, f"{stem}.hdf5")
        model.save_weights(path)
        x = rng.integers(0, 256, size=(1, 8, 10, 3)).astype(np.float32)
        y = model.predict(x / 255.0, verbose=0).astype(np.float32)
        arrays[f"{stem}__x"], arrays[f"{stem}__y"] = x, y
        files[f"{stem}.hdf5"] = {"arch_params": arch_params, "upscaling": upscaling,
                                 "output_shape": list(y.shape), "sha256": sha256(path)}
    reference = os.path.join(out, "reference.npz")
    np.savez_compressed(reference, **arrays)
    files["reference.npz"] = {"sha256": sha256(reference)}
    upstream = os.path.join(args.isr, "ISR", "models")
    manifest = {"generator": "tests/data/make_isr_fixtures.py", "seed": SEED,
                "tensorflow": tf.__version__, "numpy": np.__version__,
                "upstream": "idealo/image-super-resolution "
                            "3f6498cf1ac4dba162a52c5861aa9d90b7c2fe35 ISR/models/rdn.py "
                            "ISR/models/imagemodel.py ISR/utils/image_processing.py",
                "upstream_file_sha256": {
                    f"ISR/models/{n}": sha256(os.path.join(upstream, n))
                    for n in ("rdn.py", "imagemodel.py")},
                "files": files}
    write_json(os.path.join(out, "manifest.json"), manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
