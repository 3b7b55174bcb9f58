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

from sisr.errors import UsageError

PRECISIONS = ("float32", "bfloat16")
# inference_copy results per model and precision, reused by repeated `resolve` calls.
_COPIES = weakref.WeakKeyDictionary()


def check_precision(precision):
    """Returns `precision` if it is one of PRECISIONS, else raises ValueError."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, "
                         f"got {precision!r}")
    return precision


def float32_patterns(model):
    """The float32 layer patterns of `model`: its registered spec's `float32_layers`, or,
    for a model without a registered builder, every pattern of every spec."""
    from sisr.model import MODELS, spec_of

    spec = spec_of(model)
    if spec is not None:
        return spec.float32_layers
    return tuple(dict.fromkeys(p for s in MODELS.values() for p in s.float32_layers))


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
        raise UsageError(f"model {model.name!r} is not a functional model; "
                         "bfloat16 copies need one") from err
    unknown = sorted(set(names) - {layer["config"].get("name") for layer in layers})
    if unknown:
        raise UsageError(f"model {model.name!r} has no layer(s) {', '.join(unknown)}")
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


def _assign_weights(target, source):
    """Assigns `source`'s weights to the layers of the same names in `target`."""
    for layer in target.layers:
        for variable, value in zip(layer.weights, source.get_layer(layer.name).weights,
                                   strict=True):
            variable.assign(value)


def _refresh(assign, copy, source):
    assign(copy, source())


def inference_copy(model, precision):
    """The model that `sisr.resolve` and `Upscaler` run for `model` in `precision`.

    float32: `model` itself, or its `sisr.rewrite.shuffle_last` copy where that applies
    (SRResNet, SRGAN: the same result up to rounding, faster; see benchmarks/README.md);
    bfloat16: the `mixed_copy` of that. Made once per model and precision; a copy's weights
    are refreshed from `model` on every call (so that training in between shows) by one
    traced function.
    """
    check_precision(precision)
    copies = _COPIES.setdefault(model, {})
    entry = copies.get(precision)
    if entry is None:
        from sisr.inference import own_function
        from sisr.rewrite import shuffle_last

        copy, copy_weights = shuffle_last(model)
        if precision == "bfloat16":
            copy = mixed_copy(copy)
        if copy is model:
            entry = (model, None)
        else:
            source = weakref.ref(model)  # the cache must not keep its key alive
            assign = copy_weights or _assign_weights
            entry = (copy, own_function(_refresh, assign, copy, source))
        copies[precision] = entry
    if entry[1] is not None:
        entry[1]()  # traced on the first call, with the copy's other first-call costs
    return entry[0]
