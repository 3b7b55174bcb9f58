"""bfloat16 inference copies of sisr models that keep the precision-critical layers float32.

A naive `mixed_bfloat16` copy of a trained model loses visible precision where large
activations cancel into pixel values: the input normalisation (an 8-bit pixel scaled to
[0, 1] keeps only 8 significant bits in bfloat16), the head convolution that reads it, the
trunk's last conv and skip addition, and the first upsampling conv, whose input is largest
at the image border (zero padding). `mixed_copy` rebuilds the model from its config with
the `mixed_bfloat16` policy on every layer except those of `keep_float32(model)`, which get
`float32` (Keras casts at the boundaries), runs each batch normalisation as one fused op
with float32 statistics (`sisr.layers.FusedBatchNormalization`), and copies the weights
(variables stay float32 under a mixed policy). The copy is a plain functional model of
registered layers: it saves to `.keras` and loads in safe mode.

    fast = mixed_copy(model)            # or sisr.resolve(model, lr, precision="bfloat16")
"""

import fnmatch
import weakref

PRECISIONS = ("float32", "bfloat16")

# Layer names (fnmatch patterns) that `mixed_copy` runs in float32, per builder, as
# measured on the real SRResNet weights (README, "bfloat16 inference"; each group alone in
# bf16 breaks the guard): the input normalisation (5 levels) and the head conv that reads it
# (0.09 dB: a pixel / 255 keeps only 8 bits), the trunk's last conv and skip addition (15
# levels), and the first upsampling conv (7 levels, at the image border, where its input is
# ~40x larger than inside); the rest of the upsampler and the 9x9 output conv run in bf16
# (their tanh and rescaling stay float32). EDSR and WDSR follow by analogy (no real weights
# here to measure them); their float32 tails are cheap (EDSR's output conv; WDSR's main and
# skip convs to 3 * scale**2 channels).
FLOAT32_LAYERS = {
    "srresnet": ("normalize", "head_*", "body_*", "upsample_*_conv1", "output_tanh",
                 "denormalize"),
    "edsr": ("normalize", "head_*", "body_*", "upsample_*", "output_*", "denormalize"),
    "wdsr": ("normalize", "head_*", "main_x*", "skip_x*", "output_add", "denormalize"),
}
# Other functional models: every layer named like one of the above.
DEFAULT_FLOAT32_LAYERS = tuple(dict.fromkeys(p for ps in FLOAT32_LAYERS.values() for p in ps))

# mixed_copy results per model, so that repeated `resolve` calls reuse one copy.
_COPIES = weakref.WeakKeyDictionary()


def check_precision(precision):
    """Returns `precision` if it is one of PRECISIONS, else raises ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, "
                         f"got {precision!r}")
    return precision


def float32_patterns(model):
    """The float32 layer patterns for `model`, chosen by the builder it records."""
    builder = getattr(model, "builder", None) or ""
    family = "wdsr" if builder.startswith("wdsr") else builder
    return FLOAT32_LAYERS.get(family, DEFAULT_FLOAT32_LAYERS)


def keep_float32(model, patterns=None):
    """Names of the layers of `model` matching `patterns` (default: `float32_patterns`),
    which `mixed_copy` keeps in float32."""
    if patterns is None:
        patterns = float32_patterns(model)
    return [layer.name for layer in model.layers
            if any(fnmatch.fnmatchcase(layer.name, p) for p in patterns)]


def mixed_copy(model, float32_layers=None, policy="mixed_bfloat16"):
    """A copy of a functional model running in `policy`, except `float32_layers`, with its
    batch normalisations as `sisr.layers.FusedBatchNormalization`.

    Args:
        model: a functional Keras model (sisr's builders make `SRModel`s).
        float32_layers: names of layers to run in float32; None = `keep_float32(model)`,
            () = none (a naive copy, for comparison).
        policy: the Keras dtype policy of the other layers.

    Returns:
        A new model of the same class with the same weights.

    Raises:
        ValueError: if the model has no functional config or a name is not one of its layers.
    """
    import sisr.layers  # noqa: F401  (registers FusedBatchNormalization for from_config)

    names = keep_float32(model) if float32_layers is None else list(float32_layers)
    try:
        config = model.get_config()
        layers = config["layers"]
    except (NotImplementedError, KeyError, TypeError) as err:
        raise ValueError(f"model {model.name!r} is not a functional model; "
                         "bfloat16 copies need one") from err
    unknown = sorted(set(names) - {layer["config"].get("name") for layer in layers})
    if unknown:
        raise ValueError(f"model {model.name!r} has no layer(s) {', '.join(unknown)}")
    for layer in layers:
        if layer["class_name"] == "InputLayer":
            continue  # inputs stay float32: callers feed float32 pixels
        if layer["class_name"] == "BatchNormalization" and layer.get("module") == "keras.layers":
            layer.update(module=None, class_name="FusedBatchNormalization",
                         registered_name="sisr>FusedBatchNormalization")
        layer_config = layer["config"]
        layer_config["dtype"] = "float32" if layer_config.get("name") in names else policy
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def inference_copy(model, precision):
    """`model` itself for float32, else its `mixed_copy` for bfloat16: made once per model,
    its weights refreshed from `model` on every call (so that training in between shows)."""
    if check_precision(precision) == "float32":
        return model
    copy = _COPIES.get(model)
    if copy is None:
        copy = _COPIES[model] = mixed_copy(model)
    else:
        for target, source in zip(copy.weights, model.weights):
            target.assign(source)
    return copy
