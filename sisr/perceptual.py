"""ESRGAN / Real-ESRGAN's perceptual loss: L1 between pre-activation VGG19 features.

As BasicSR's `PerceptualLoss` (basicsr/losses/basic_loss.py) on its `VGGFeatureExtractor`
(basicsr/archs/vgg_arch.py): images on [0, 1] are normalised with the ImageNet mean and std
(`use_input_norm`), run through torchvision's VGG19 `features`, and the outputs of the
named layers are compared. ESRGAN (Wang et al. 2018, section 3.3) takes the features
*before* the activation, so "conv5_4" is the fifth block's fourth convolution without its
ReLU; Real-ESRGAN's setting weighs conv1_2, conv2_2 by 0.1 and conv3_4, conv4_4, conv5_4
by 1 (`DEFAULT_LAYER_WEIGHTS`).

The weights are those of `keras.applications.VGG19`, read from the same local file as the
SRGAN content loss (`sisr.losses.vgg19_weights_path`). Keras' VGG19 convs include their
ReLU, so `vgg19_preactivation` builds the convs linear with separate ReLU layers. (Keras'
ImageNet VGG19 and torchvision's are different trainings of the same network: the loss has
BasicSR's form, not its exact values on real weights.)
"""

import logging

import keras
import numpy as np
from keras import ops

from sisr.losses import download_vgg19_weights, load_vgg19_weights, vgg19_weights_path

log = logging.getLogger(__name__)

DEFAULT_LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0,
                         "conv5_4": 1.0}
# torchvision's ImageNet normalisation, for images on [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CRITERIA = ("l1", "l2")
VGG19_BLOCKS = (2, 2, 4, 4, 4)  # convs per block
VGG19_FILTERS = (64, 128, 256, 512, 512)


def vgg19_tap_names():
    """BasicSR's names of VGG19's feature layers in order: conv1_1, relu1_1, ..., pool5."""
    names = []
    for block, convs in enumerate(VGG19_BLOCKS, start=1):
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


@keras.saving.register_keras_serializable(package="sisr")
class VGGInputNorm(keras.layers.Layer):
    """RGB on [0, 255] (or [-1, 1] with `range_norm`) -> [0, 1] -> ImageNet-normalised
    (with `use_input_norm`), as BasicSR's VGGFeatureExtractor normalises its input."""

    def __init__(self, use_input_norm=True, range_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.use_input_norm = bool(use_input_norm)
        self.range_norm = bool(range_norm)

    def call(self, inputs):
        x = (inputs + 1.0) / 2.0 if self.range_norm else inputs / 255.0
        if self.use_input_norm:
            mean = ops.convert_to_tensor(np.asarray(IMAGENET_MEAN, np.float32), x.dtype)
            std = ops.convert_to_tensor(np.asarray(IMAGENET_STD, np.float32), x.dtype)
            x = (x - mean) / std
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"use_input_norm": self.use_input_norm, "range_norm": self.range_norm})
        return config


def check_taps(layers):
    """The tap names as a list; ValueError for an unknown or empty list."""
    taps = list(layers)
    known = vgg19_tap_names()
    unknown = [t for t in taps if t not in known]
    if unknown or not taps:
        raise ValueError(f"VGG19 layers {unknown or taps!r}: expected BasicSR names such as "
                         f"conv1_2, relu2_2, conv5_4, pool4 (one of {', '.join(known)})")
    return taps


def vgg19_preactivation(layers, weights=None, use_input_norm=True, range_norm=False,
                        download=download_vgg19_weights):
    """A frozen VGG19 with BasicSR's taps: RGB on [0, 255] -> {tap name: features}.

    Args:
        layers: BasicSR layer names (conv5_4 is before its ReLU, relu5_4 after it, pool5
            after the pooling); the network is cut after the deepest.
        weights: a VGG19 weights file (`sisr.losses.vgg19_weights_path`: None = the
            Keras cache, downloaded if absent). Conv layers are read by Keras' names
            (block5_conv4).
        use_input_norm, range_norm: as BasicSR's (see `VGGInputNorm`).
        download: as in `sisr.losses.vgg19_weights_path` (None: never download).

    Built under the current dtype policy; `trainable` is False.
    """
    taps = check_taps(layers)
    path = vgg19_weights_path(weights, download=download)
    names = vgg19_tap_names()
    last = max(names.index(t) for t in taps)

    x_in = keras.Input(shape=(None, None, 3), name="rgb")
    # float32 whatever the policy: bfloat16 cannot hold 0..255 to better than 1 level.
    x = VGGInputNorm(use_input_norm, range_norm, name="input_norm", dtype="float32")(x_in)
    outputs = {}
    for name in names[:last + 1]:
        kind, index = name[:4], name[4:]
        if kind == "conv":
            block, i = index.split("_")
            layer = keras.layers.Conv2D(VGG19_FILTERS[int(block) - 1], 3, padding="same",
                                        name=f"block{block}_conv{i}")
        elif kind == "relu":
            layer = keras.layers.ReLU(name=name)
        else:
            layer = keras.layers.MaxPooling2D(2, name=f"block{index}_pool")
        x = layer(x)
        if name in taps:
            outputs[name] = x
    model = keras.Model(x_in, outputs, name="vgg19_preactivation")
    load_vgg19_weights(model, path)
    log.info("VGG19 weights from %s, pre-activation taps %s", path, ", ".join(taps))
    model.trainable = False
    return model


def _gram(features):
    """(n, h, w, c) -> (n, c, c) Gram matrices divided by c * h * w, as BasicSR's."""
    shape = ops.shape(features)
    flat = ops.reshape(features, (shape[0], -1, shape[3]))
    gram = ops.matmul(ops.transpose(flat, (0, 2, 1)), flat)
    return gram / ops.cast(shape[1] * shape[2] * shape[3], gram.dtype)


class PerceptualLoss:
    """BasicSR's PerceptualLoss as per-image values: callable (hr, sr) -> float32 [batch].

    For each tap, the per-image criterion is the mean over that image's elements
    (|a - b| for "l1", (a - b)^2 for "l2"); images of one batch have the same size, so
    the batch mean of the per-image values is BasicSR's mean over the whole batch
    (`torch.nn.L1Loss`), exactly. Total = perceptual_weight * sum_k w_k crit(phi_k(sr),
    phi_k(hr)) + style_weight * sum_k w_k crit(G_k(sr), G_k(hr)), G = Gram matrix / (c h w);
    a term whose weight is 0 is not computed (BasicSR returns None for it). HR features
    carry no gradient (BasicSR detaches the ground truth).

    A plain object (not a Keras layer), as `sisr.losses.ContentLoss`: a model holding it
    neither trains nor saves the frozen VGG.

    Args:
        layer_weights: {BasicSR tap name: weight} (default Real-ESRGAN's).
        vgg_weights: VGG19 weights file (see `vgg19_preactivation`), or a prebuilt
            extractor from `vgg19_preactivation` with these taps.
        use_input_norm, range_norm: as BasicSR's; inputs are RGB on [0, 255] ([-1, 1]
            with range_norm).
        criterion: "l1" or "l2" (BasicSR's "fro", a norm over the whole batch, has no
            per-image form and is not offered).
        perceptual_weight, style_weight: BasicSR's weights of the two terms.
        download: as in `sisr.losses.vgg19_weights_path`.
    """

    def __init__(self, layer_weights=None, vgg_weights=None, use_input_norm=True,
                 range_norm=False, criterion="l1", perceptual_weight=1.0, style_weight=0.0,
                 download=download_vgg19_weights):
        layer_weights = dict(DEFAULT_LAYER_WEIGHTS if layer_weights is None
                             else layer_weights)
        check_taps(layer_weights)
        if criterion not in CRITERIA:
            raise ValueError(f"PerceptualLoss: `criterion` must be one of {CRITERIA}, "
                             f"got {criterion!r}")
        self.layer_weights = {k: float(v) for k, v in layer_weights.items()}
        self.criterion = criterion
        self.perceptual_weight = float(perceptual_weight)
        self.style_weight = float(style_weight)
        if isinstance(vgg_weights, keras.Model):
            self.feature_extractor = vgg_weights
        else:
            self.feature_extractor = vgg19_preactivation(
                list(self.layer_weights), weights=vgg_weights, use_input_norm=use_input_norm,
                range_norm=range_norm, download=download)

    def _distance(self, a, b):
        diff = a - b
        values = ops.abs(diff) if self.criterion == "l1" else ops.square(diff)
        return ops.mean(ops.reshape(values, (ops.shape(values)[0], -1)), axis=1)

    def features(self, images):
        """{tap: float32 features} of RGB images."""
        out = self.feature_extractor(images, training=False)
        return {k: ops.cast(out[k], "float32") for k in self.layer_weights}

    def parts(self, hr, sr):
        """(perceptual, style): per-image float32 [batch] each, None for a term whose
        weight is not positive (as BasicSR)."""
        # Two passes, not one over both batches as sisr.losses.ContentLoss: without a
        # gradient path the HR pass is left out of the backward pass (about half of it).
        real_features = self.features(ops.stop_gradient(hr))
        fake_features = self.features(sr)
        percep = style = None
        for name, weight in self.layer_weights.items():
            real = ops.stop_gradient(real_features[name])
            fake = fake_features[name]
            if self.perceptual_weight > 0:
                term = self._distance(fake, real) * weight
                percep = term if percep is None else percep + term
            if self.style_weight > 0:
                term = self._distance(_gram(fake), _gram(real)) * weight
                style = term if style is None else style + term
        if percep is not None:
            percep = percep * self.perceptual_weight
        if style is not None:
            style = style * self.style_weight
        return percep, style

    def __call__(self, hr, sr):
        """Per-image perceptual + style loss, float32 [batch]."""
        percep, style = self.parts(hr, sr)
        if percep is None and style is None:
            return ops.zeros((ops.shape(hr)[0],), "float32")
        if percep is None:
            return style
        return percep if style is None else percep + style

    def mean(self, hr, sr):
        """The batch mean: BasicSR's percep_loss (+ style_loss)."""
        return ops.mean(self(hr, sr))
