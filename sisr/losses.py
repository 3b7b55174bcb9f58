"""SRGAN losses: a frozen VGG19 feature extractor, the content loss, adversarial losses.

docs/reference.md §6: content loss = MSE of VGG19 features of caffe-preprocessed HR and SR
images (VGG54 = `block5_conv4`, VGG22 = `block2_conv2`), the features divided by 12.75;
generator loss = content + 1e-3 * BCE(1, D(SR)); discriminator loss = BCE(1, D(HR)) +
BCE(0, D(SR)).

The features are the outputs of Keras' VGG19 conv layers, which include their ReLU: the
SRGAN paper's phi_{i,j} is "the feature map obtained by the j-th convolution (after
activation) before the i-th maxpooling layer".

ImageNet weights are looked up in this order (`vgg19_weights_path`): an explicit file,
the Keras cache (`$KERAS_HOME` or `~/.keras`, `models/` + `VGG19_WEIGHTS_FILE`), then a
download into that cache. Without a file and without network, `VGGWeightsError` says which
file is needed and where to put it: sisr never trains with random VGG weights unless a
caller passes such a file explicitly (as the tests do).
"""

import logging
import os
import re
import socket
import urllib.parse

import keras
import numpy as np
from keras import ops

from sisr.errors import SisrError

log = logging.getLogger(__name__)

VGG_LAYERS = {"VGG22": "block2_conv2", "VGG54": "block5_conv4"}
# SRGAN (Ledig et al. 2017) rescales VGG features by 1/12.75 before the MSE.
FEATURE_SCALE = 12.75
# Caffe/ImageNet channel means in BGR order, for [0, 255] inputs.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

VGG19_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG19_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
                     + VGG19_WEIGHTS_FILE)
VGG19_WEIGHTS_MD5 = "253f8cb515780f3b799900260a226db6"
# Set to 1 to never download (CI, air-gapped machines): a missing file fails at once.
OFFLINE_ENV = "SISR_OFFLINE"

_CONV_NAME = re.compile(r"block\d+_conv\d+$")


class VGGWeightsError(SisrError, ValueError):
    """The VGG19 weights are missing, unreadable or not VGG19's."""


# -- weights files ---------------------------------------------------------------------
def keras_cache_path():
    """Where `keras.applications.VGG19(weights="imagenet")` keeps the notop weights."""
    home = os.environ.get("KERAS_HOME")
    if not home:
        # As Keras: ~/.keras, or /tmp/.keras when the home folder is not writable.
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return os.path.join(home, "models", VGG19_WEIGHTS_FILE)


def _missing_message(reason):
    return (
        f"VGG19 ImageNet weights are needed for the SRGAN content loss but {reason}. "
        f"Download {VGG19_WEIGHTS_URL} (80 MB, md5 {VGG19_WEIGHTS_MD5}) and either put it "
        f"at {keras_cache_path()} or pass its path with --vgg-weights PATH "
        f"(vgg_feature_extractor(weights=PATH) in Python)."
    )


def download_vgg19_weights(timeout=10.0):
    """Downloads the notop weights into the Keras cache; returns the file's path.

    Checks that the host answers within `timeout` seconds first, so that a machine
    without network fails quickly instead of hanging in urllib.
    """
    host = urllib.parse.urlsplit(VGG19_WEIGHTS_URL).hostname
    with socket.create_connection((host, 443), timeout=timeout):
        pass
    return keras.utils.get_file(
        VGG19_WEIGHTS_FILE, VGG19_WEIGHTS_URL, cache_subdir="models",
        file_hash=VGG19_WEIGHTS_MD5,
    )


def vgg19_weights_path(weights=None, download=download_vgg19_weights):
    """The local VGG19 weights file to use.

    Args:
        weights: an explicit `.h5` / `.weights.h5` path, or None to use the Keras cache
            file, downloading it if needed.
        download: a no-argument callable that fetches the file and returns its path, or
            None to never download. `$SISR_OFFLINE=1` also disables downloading.

    Raises:
        VGGWeightsError: no file, and it could not be downloaded (the message names the
            file and where to put it).
    """
    if weights is not None:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise VGGWeightsError(f"--vgg-weights {path}: no such file; expected VGG19 "
                                  f"ImageNet weights ({VGG19_WEIGHTS_FILE})")
        return path
    cached = keras_cache_path()
    if os.path.isfile(cached):
        return cached
    if download is None or os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise VGGWeightsError(_missing_message(
            f"{cached} does not exist and downloading is disabled"))
    log.info("downloading VGG19 weights from %s", VGG19_WEIGHTS_URL)
    try:
        return download()
    except Exception as err:  # any network/IO failure ends in the same advice
        raise VGGWeightsError(_missing_message(
            f"{cached} does not exist and the download failed ({type(err).__name__}: {err})"
        )) from err


def vgg19_conv_shapes():
    """{layer name: [kernel shape, bias shape]} of the 16 conv layers of Keras' VGG19."""
    shapes, channels = {}, 3
    for block, (filters, convs) in enumerate(((64, 2), (128, 2), (256, 4), (512, 4),
                                              (512, 4)), start=1):
        for conv in range(1, convs + 1):
            shapes[f"block{block}_conv{conv}"] = [(3, 3, channels, filters), (filters,)]
            channels = filters
    return shapes


def _decode(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def read_h5_weights(path, read=True):
    """The arrays of a weights file per layer name: {name: [arrays in order]}.

    Understands the legacy Keras HDF5 layout (root attribute `layer_names`, as in Keras'
    published VGG19 files) and Keras 3 `.weights.h5` files (`.../vars` groups named by
    their `name` attribute). With `read=False`, gives the arrays' shapes instead.
    """
    import h5py

    path = os.fspath(path)
    if not h5py.is_hdf5(path):
        raise VGGWeightsError(f"{path} is not an HDF5 weights file (.h5 / .weights.h5); "
                              f"expected VGG19 weights such as {VGG19_WEIGHTS_FILE}")

    def get(dataset):
        return np.asarray(dataset) if read else tuple(dataset.shape)

    weights = {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" in root.attrs:
            for name in map(_decode, root.attrs["layer_names"]):
                group = root[name]
                weights[name] = [get(group[_decode(w)])
                                 for w in group.attrs.get("weight_names", [])]
        else:
            def visit(key, obj):
                if key.split("/")[-1] == "vars" and isinstance(obj, h5py.Group):
                    arrays = [get(obj[k]) for k in sorted(obj, key=int)]
                    weights.setdefault(_decode(obj.attrs.get("name", key)), arrays)

            root.visititems(visit)
    return weights


def check_vgg19_weights(path):
    """Raises VGGWeightsError unless `path` holds the 16 conv layers of VGG19 with their
    shapes (extra layers, such as the classifier of the include_top file, are fine)."""
    found = read_h5_weights(path, read=False)
    problems = []
    for name, expected in vgg19_conv_shapes().items():
        shapes = found.get(name)
        if shapes is None:
            problems.append(f"{name} missing")
        elif [tuple(s) for s in shapes] != expected:
            problems.append(f"{name} has shapes {shapes}, expected {expected}")
    if problems:
        convs = sum(1 for name in found if _CONV_NAME.match(name))
        raise VGGWeightsError(
            f"{path} does not hold VGG19 weights: expected the 16 conv layers of "
            f"keras.applications.VGG19 (block1_conv1 kernel (3, 3, 3, 64) ... block5_conv4 "
            f"kernel (3, 3, 512, 512), as in {VGG19_WEIGHTS_FILE}); "
            + "; ".join(problems[:4])
            + (f" (+{len(problems) - 4} more)" if len(problems) > 4 else "")
            + f"; the file has {convs} blockN_convM layers"
        )


def load_vgg19_weights(model, path):
    """Checks `path` (`check_vgg19_weights`) and sets the conv weights of a Keras VGG19."""
    check_vgg19_weights(path)
    stored = read_h5_weights(path)
    for layer in model.layers:
        if layer.name in stored and _CONV_NAME.match(layer.name):
            layer.set_weights(stored[layer.name])


# -- feature extractor -----------------------------------------------------------------
@keras.saving.register_keras_serializable(package="sisr")
class CaffePreprocess(keras.layers.Layer):
    """RGB on [0, 255] -> BGR minus the ImageNet channel means (VGG's training input)."""

    def call(self, inputs):
        mean = ops.convert_to_tensor(np.asarray(CAFFE_BGR_MEAN, np.float32), inputs.dtype)
        return ops.flip(inputs, axis=-1) - mean

    def compute_output_shape(self, input_shape):
        return input_shape


def vgg_feature_extractor(layer="VGG54", weights=None, download=download_vgg19_weights):
    """A frozen VGG19 cut at `layer` that maps RGB on [0, 255] to features.

    Args:
        layer: "VGG54" (block5_conv4) or "VGG22" (block2_conv2), or a VGG19 layer name.
        weights: path of a VGG19 weights file (.h5 / .weights.h5), or None for ImageNet
            weights from the Keras cache or a download (see `vgg19_weights_path`).
        download: passed to `vgg19_weights_path` (None: never download).

    Built under the current dtype policy; `trainable` is False.
    """
    cut = VGG_LAYERS.get(layer, layer)
    path = vgg19_weights_path(weights, download=download)
    vgg = keras.applications.VGG19(include_top=False, weights=None,
                                   input_shape=(None, None, 3))
    names = [lyr.name for lyr in vgg.layers]
    if cut not in names:
        raise ValueError(f"content layer {layer!r} is not one of {', '.join(VGG_LAYERS)} "
                         f"or a VGG19 layer name")
    load_vgg19_weights(vgg, path)
    log.info("VGG19 weights from %s, features of %s", path, cut)

    trunk = keras.Model(vgg.input, vgg.get_layer(cut).output, name=f"vgg19_to_{cut}")
    x_in = keras.Input(shape=(None, None, 3), name="rgb")
    features = trunk(CaffePreprocess(name="caffe_preprocess")(x_in))
    model = keras.Model(x_in, features, name=f"vgg19_{layer.lower()}")
    model.trainable = False
    return model


# -- losses ----------------------------------------------------------------------------
class ContentLoss:
    """Per-image MSE of the features of HR and SR images, features divided by 12.75.

    A plain object (not a Keras layer) so that a model holding it neither trains nor
    saves the frozen extractor's weights.
    """

    def __init__(self, feature_extractor, feature_scale=FEATURE_SCALE):
        self.feature_extractor = feature_extractor
        self.feature_scale = float(feature_scale)

    def __call__(self, hr, sr):
        """Float32 tensor of shape [batch]."""
        batch = ops.shape(hr)[0]
        # One pass over both batches: half the kernel launches of two calls.
        features = self.feature_extractor(ops.concatenate([hr, sr], axis=0), training=False)
        features = ops.cast(features, "float32") / self.feature_scale
        diff = features[:batch] - features[batch:]
        return ops.mean(ops.square(diff), axis=(1, 2, 3))

    def mean(self, hr, sr):
        """The batch mean, as a Keras loss would return it."""
        return ops.mean(self(hr, sr))


def _bce(target, prob):
    target = ops.cast(ops.broadcast_to(target, ops.shape(prob)), "float32")
    values = ops.binary_crossentropy(target, ops.cast(prob, "float32"), from_logits=False)
    return ops.mean(ops.reshape(values, (ops.shape(prob)[0], -1)), axis=1)


def generator_adversarial_loss(fake_prob):
    """Per-image BCE(1, D(SR)) of discriminator probabilities."""
    return _bce(1.0, fake_prob)


def discriminator_loss(real_prob, fake_prob, real_target=1.0, fake_target=0.0):
    """Per-image BCE(real_target, D(HR)) + BCE(fake_target, D(SR)).

    Targets may be scalars or per-image tensors of shape [batch, 1] (label smoothing
    or noise).
    """
    return _bce(real_target, real_prob) + _bce(fake_target, fake_prob)


def discriminator_accuracy(real_prob, fake_prob):
    """Per-image mean of [D(HR) > 0.5] and [D(SR) < 0.5]."""
    real = ops.cast(ops.cast(real_prob, "float32") > 0.5, "float32")
    fake = ops.cast(ops.cast(fake_prob, "float32") < 0.5, "float32")
    batch = ops.shape(real_prob)[0]
    return 0.5 * (ops.mean(ops.reshape(real, (batch, -1)), axis=1)
                  + ops.mean(ops.reshape(fake, (batch, -1)), axis=1))


# -- losses on discriminator logits (ESRGAN, Real-ESRGAN) ---------------------------------
def bce_with_logits(target, logits):
    """Per-image BCE of logits (any shape [batch, ...]) against a scalar or per-image
    [batch, 1] target, averaged over each image's outputs (BasicSR's vanilla GANLoss,
    `nn.BCEWithLogitsLoss`, is this averaged over the batch)."""
    logits = ops.cast(logits, "float32")
    batch = ops.shape(logits)[0]
    flat = ops.reshape(logits, (batch, -1))
    target = ops.broadcast_to(ops.cast(target, "float32"), ops.shape(flat))
    # max(x, 0) - x t + log(1 + exp(-|x|)): stable for any logit.
    values = ops.relu(flat) - flat * target + ops.log1p(ops.exp(-ops.abs(flat)))
    return ops.mean(values, axis=1)


def vanilla_generator_loss(fake_logits):
    """Per-image BCE(1, D(SR)) of logits (BasicSR GANLoss "vanilla", generator side)."""
    return bce_with_logits(1.0, fake_logits)


def vanilla_discriminator_loss(real_logits, fake_logits, real_target=1.0, fake_target=0.0):
    """Per-image BCE(real_target, D(HR)) + BCE(fake_target, D(SR)) of logits."""
    return bce_with_logits(real_target, real_logits) + bce_with_logits(fake_target,
                                                                       fake_logits)


def logits_accuracy(real_logits, fake_logits):
    """Per-image mean of [D(HR) > 0] and [D(SR) < 0] (logits; a per-pixel output counts
    every pixel)."""
    return discriminator_accuracy(ops.sigmoid(ops.cast(real_logits, "float32")),
                                  ops.sigmoid(ops.cast(fake_logits, "float32")))


def batch_mean(values):
    """The mean of `values` over the global batch: under tf.distribute, the mean of the
    replicas' means (their batches are equal), with gradients to every replica; so that
    a relativistic loss is the same on any number of replicas (BasicSR under DDP takes
    each GPU's own mean instead)."""
    import tensorflow as tf

    local = ops.mean(values)
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return local
    return context.all_reduce(tf.distribute.ReduceOp.MEAN, local)


def relativistic(real_logits, fake_logits):
    """ESRGAN's relativistic average logits: C(x_r) - mean C(x_f) and C(x_f) - mean C(x_r),
    the means over the global batch (`batch_mean`)."""
    real = ops.cast(real_logits, "float32")
    fake = ops.cast(fake_logits, "float32")
    return real - batch_mean(fake), fake - batch_mean(real)


def relativistic_generator_loss(real_logits, fake_logits):
    """Per-image RaGAN generator loss as BasicSR's ESRGANModel: (BCE(0, C(x_r) - mean
    C(x_f)) + BCE(1, C(x_f) - mean C(x_r))) / 2, with D(HR) a constant (`.detach()`)."""
    real = ops.stop_gradient(ops.cast(real_logits, "float32"))
    real_vs_fake, fake_vs_real = relativistic(real, fake_logits)
    return 0.5 * (bce_with_logits(0.0, real_vs_fake) + bce_with_logits(1.0, fake_vs_real))


def relativistic_discriminator_loss(real_logits, fake_logits, real_target=1.0,
                                    fake_target=0.0):
    """Per-image RaGAN discriminator loss as BasicSR's ESRGANModel: (BCE(1, C(x_r) -
    mean C(x_f)) + BCE(0, C(x_f) - mean C(x_r))) / 2, where each term's batch mean of the
    other side is a constant (the `.detach()`s of its two backward passes)."""
    real = ops.cast(real_logits, "float32")
    fake = ops.cast(fake_logits, "float32")
    real_vs_fake = real - ops.stop_gradient(batch_mean(fake))
    fake_vs_real = fake - ops.stop_gradient(batch_mean(real))
    return 0.5 * (bce_with_logits(real_target, real_vs_fake)
                  + bce_with_logits(fake_target, fake_vs_real))


def relativistic_accuracy(real_logits, fake_logits):
    """Per-image mean of [C(x_r) > mean C(x_f)] and [C(x_f) < mean C(x_r)]."""
    return logits_accuracy(*relativistic(real_logits, fake_logits))


# -- pixel losses on [0, 255] images, valued as on [0, 1] (BasicSR's scale) ------------------
def l1_pixel_loss(hr, sr):
    """Per-image mean |SR - HR| of images on [0, 255], divided by 255: BasicSR's L1Loss
    of the same images on [0, 1]."""
    diff = (ops.cast(sr, "float32") - ops.cast(hr, "float32")) / 255.0
    return ops.mean(ops.reshape(ops.abs(diff), (ops.shape(hr)[0], -1)), axis=1)


def mse_pixel_loss(hr, sr):
    """Per-image mean (SR - HR)^2 of images on [0, 255], valued as on [0, 1]."""
    diff = (ops.cast(sr, "float32") - ops.cast(hr, "float32")) / 255.0
    return ops.mean(ops.reshape(ops.square(diff), (ops.shape(hr)[0], -1)), axis=1)


PIXEL_LOSSES = {"l1": l1_pixel_loss, "mse": mse_pixel_loss}
