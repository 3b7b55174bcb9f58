"""The networks of OpenCV's dnn_superres module that work on the luma channel: ESPCN
(fannymonori/TF-ESPCN), FSRCNN and FSRCNN-small (Saafke/FSRCNN_Tensorflow) and LapSRN
(fannymonori/TF-LapSRN), whose frozen TensorFlow graphs (`ESPCN_x2.pb`, ...) OpenCV runs
and `sisr.port` reads (the "opencv-pb" format).

OpenCV's `DnnSuperResImpl::upsample` converts the BGR image to YCrCb
(`cv::cvtColor`, full range: Y = 0.299 R + 0.587 G + 0.114 B, Cr = 0.713 (R - Y),
Cb = 0.564 (B - Y), each chroma plus 128), runs the network on Y / 255, upscales Cr and
Cb with `cv::resize` at its default interpolation (bilinear, half-pixel centres, borders
clamped: `sisr.layers.OpenCVUpsample`) and
converts back (R = Y + 1.403 Cr, G = Y - 0.714 Cr - 0.344 Cb, B = Y + 1.773 Cb). These
models do the same inside, on float RGB [0, 255] in and out like every sisr model,
without OpenCV's rounding to uint8 between the steps and its clipping of the result.
"""

import keras

from sisr.layers import ColorMatrix, OpenCVUpsample, PixelShuffle
from sisr.model.common import SCALES, check_positive_int, check_scale, lr_input, sr_model
from sisr.model.registry import ModelSpec, register
from sisr.model.srcnn import check_int_list

# OpenCV's float RGB <-> YCrCb coefficients (modules/imgproc color_yuv: R2YF, G2YF, B2YF,
# YCRF, YCBF; CR2RF, CR2GF, CB2GF, CB2BF). The chroma here is centred (no 128 offset):
# the bilinear resize's weights sum to one, so the offset would only be added and removed.
KR, KG, KB, KCR, KCB = 0.299, 0.587, 0.114, 0.713, 0.564
RGB_TO_Y = [[KR, KG, KB]]
RGB_TO_CRCB = [[KCR * (1 - KR), -KCR * KG, -KCR * KB],
               [-KCB * KR, -KCB * KG, KCB * (1 - KB)]]
YCRCB_TO_RGB = [[1.0, 1.403, 0.0], [1.0, -0.714, -0.344], [1.0, 0.0, 1.773]]
# The layers that a bfloat16 copy keeps in float32: the colour conversions and the chroma
# path (bfloat16 would round pixel values to 8 significant bits).
COLOUR_LAYERS = ("luma", "normalize", "denormalize", "chroma*", "merge", "rgb")


def luma_model(network, scale, builder, **arguments):
    """The RGB [0, 255] `SRModel` of `network` (a function of the luma tensor on [0, 1]
    that returns the upscaled luma on [0, 1]), as OpenCV's dnn_superres runs it."""
    x_in = lr_input()
    y = ColorMatrix(RGB_TO_Y, name="luma")(x_in)
    y = keras.layers.Rescaling(1.0 / 255.0, name="normalize")(y)
    y = network(y)
    y = keras.layers.Rescaling(255.0, name="denormalize", dtype="float32")(y)
    chroma = ColorMatrix(RGB_TO_CRCB, name="chroma")(x_in)
    chroma = OpenCVUpsample(scale, name="chroma_upsample")(chroma)
    x = keras.layers.Concatenate(name="merge")([y, chroma])
    x = ColorMatrix(YCRCB_TO_RGB, name="rgb", dtype="float32")(x)
    return sr_model(x_in, x, builder, scale=scale, **arguments)


def espcn_opencv(scale, num_filters=(64, 32), kernel_sizes=(5, 3, 3)):
    """Builds the ESPCN of OpenCV's `ESPCN_x{2,3,4}.pb` (fannymonori/TF-ESPCN) on the luma
    channel: convs 64-5 and 32-3 with ReLU, a 3x3 conv to scale^2 channels, TensorFlow's
    `depth_to_space` and tanh."""
    check_scale(scale, SCALES, "espcn_opencv")
    num_filters = check_int_list(num_filters, "num_filters", "espcn_opencv")
    kernel_sizes = check_int_list(kernel_sizes, "kernel_sizes", "espcn_opencv",
                                  len(num_filters) + 1)

    def network(x):
        for i, (filters, size) in enumerate(zip(num_filters, kernel_sizes), start=1):
            x = keras.layers.Conv2D(filters, size, padding="same", activation="relu",
                                    name=f"conv{i}")(x)
        x = keras.layers.Conv2D(scale * scale, kernel_sizes[-1], padding="same",
                                name=f"output_x{scale}_conv")(x)
        x = PixelShuffle(scale, name=f"output_x{scale}_shuffle")(x)
        return keras.layers.Activation("tanh", name="output_tanh")(x)

    return luma_model(network, scale, "espcn_opencv", num_filters=num_filters,
                      kernel_sizes=kernel_sizes)


def _prelu(name):
    return keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25),
                              shared_axes=[1, 2], name=name)


def fsrcnn_opencv(scale, d=56, s=12, m=4):
    """Builds the sub-pixel FSRCNN(d, s, m) of OpenCV's `FSRCNN_x{2,3,4}.pb` (56, 12, 4)
    and `FSRCNN-small_x{2,3,4}.pb` (32, 5, 1) (Saafke/FSRCNN_Tensorflow) on the luma
    channel: conv5x5(d), conv1x1(s), m conv3x3(s), conv1x1(d), each with PReLU, then a
    1x1 conv to scale^2 channels and `depth_to_space` instead of the paper's deconvolution
    (`sisr.model.fsrcnn`). The graph adds one bias after the shuffle; here the conv has a
    bias per sub-pixel, which the port fills with that one value."""
    check_scale(scale, SCALES, "fsrcnn_opencv")
    for value, argument in ((d, "d"), (s, "s")):
        check_positive_int(value, argument, "fsrcnn_opencv")
    if isinstance(m, bool) or not isinstance(m, int) or m < 0:
        raise ValueError(f"fsrcnn_opencv: `m` must be a non-negative integer, got {m!r}")

    def network(x):
        stages = [("feature", d, 5), ("shrink", s, 1)]
        stages += [(f"map{i}", s, 3) for i in range(1, m + 1)] + [("expand", d, 1)]
        for name, filters, size in stages:
            x = keras.layers.Conv2D(filters, size, padding="same",
                                    kernel_initializer="he_normal", name=f"{name}_conv")(x)
            x = _prelu(f"{name}_prelu")(x)
        x = keras.layers.Conv2D(scale * scale, 1, padding="same",
                                name=f"upsample_x{scale}_conv")(x)
        return PixelShuffle(scale, name=f"upsample_x{scale}_shuffle")(x)

    return luma_model(network, scale, "fsrcnn_opencv", d=d, s=s, m=m)


LAPSRN_SCALES = (2, 4, 8)


def lapsrn_opencv(scale, num_filters=64, depth=10, negative_slope=0.2):
    """Builds the LapSRN of OpenCV's `LapSRN_x{2,4,8}.pb` (fannymonori/TF-LapSRN) on the
    luma channel: one level per factor 2, each with a feature branch (`depth` 3x3 convs,
    the first from the previous level's 1-channel features, then a 4x4 conv to 4 channels
    and `depth_to_space(2)`) and an image branch (a 4x4 conv of the previous level's image
    and `depth_to_space(2)`), summed; LeakyReLU(`negative_slope`) after every conv, every
    shuffle of the feature branch and every sum. The graph's first conv of each level has
    one bias for all its channels; here it has one per channel, which the port fills with
    that value. The 4x4 convs have TensorFlow's "same" padding (1 before, 2 after)."""
    check_scale(scale, LAPSRN_SCALES, "lapsrn_opencv")
    check_positive_int(num_filters, "num_filters", "lapsrn_opencv")
    check_positive_int(depth, "depth", "lapsrn_opencv")
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)) \
            or not 0 <= negative_slope < 1:
        raise ValueError("lapsrn_opencv: `negative_slope` must be a number in [0, 1), got "
                         f"{negative_slope!r}")
    negative_slope = float(negative_slope)
    init = {"kernel_initializer": "glorot_uniform",
            "bias_initializer": keras.initializers.Constant(0.1)}

    def leaky(name):
        return keras.layers.LeakyReLU(negative_slope, name=name)

    def network(x):
        features = image = x
        for level in range(1, scale.bit_length()):
            name = f"level{level}"
            for i in range(1, depth + 1):
                features = keras.layers.Conv2D(num_filters, 3, padding="same",
                                               name=f"{name}_conv{i}", **init)(features)
                features = leaky(f"{name}_act{i}")(features)
            features = keras.layers.Conv2D(4, 4, padding="same", use_bias=False,
                                           name=f"{name}_features_conv")(features)
            features = PixelShuffle(2, name=f"{name}_features_shuffle")(features)
            features = leaky(f"{name}_features_act")(features)
            image = keras.layers.Conv2D(4, 4, padding="same", use_bias=False,
                                        name=f"{name}_image_conv")(image)
            image = PixelShuffle(2, name=f"{name}_image_shuffle")(image)
            image = keras.layers.Add(name=f"{name}_add")([image, features])
            image = leaky(f"{name}_act")(image)
        return image

    return luma_model(network, scale, "lapsrn_opencv", num_filters=num_filters,
                      depth=depth, negative_slope=negative_slope)


register(ModelSpec(
    "espcn_opencv", espcn_opencv,
    tiny={"num_filters": [4, 4]},
    float32_layers=COLOUR_LAYERS + ("output_*",),
    layouts=("opencv-pb",),
))
register(ModelSpec(
    "fsrcnn_opencv", fsrcnn_opencv,
    tiny={"d": 8, "s": 4, "m": 1},
    float32_layers=COLOUR_LAYERS + ("upsample_*",),
    layouts=("opencv-pb",),
))
register(ModelSpec(
    "lapsrn_opencv", lapsrn_opencv,
    scales=LAPSRN_SCALES,
    tiny={"num_filters": 4, "depth": 2},
    float32_layers=COLOUR_LAYERS,
    layouts=("opencv-pb",),
))
