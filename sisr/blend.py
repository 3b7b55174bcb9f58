"""Network interpolation: one model whose weights are a weighted sum of two models' weights.

    blended = interpolate(model_a, model_b, 0.3)     # 0.3 a + 0.7 b, weight by weight

Real-ESRGAN's "dni" (deep network interpolation, Wang et al., CVPR 2019): two trainings of
the same architecture (e.g. strong and weak denoising) blended into one network, run once.
Both models must be built by the same registered builder with the same arguments.
"""

from sisr.errors import SisrError


class BlendError(SisrError, ValueError):
    """Two models that cannot be interpolated (other architectures or weights)."""


def interpolate(model_a, model_b, weight_a):
    """A new model of the same builder with weights `weight_a * a + (1 - weight_a) * b`.

    Raises `BlendError` unless both are sisr models of one builder and arguments, with
    weights of the same names and shapes, and `weight_a` is in [0, 1].
    """
    from sisr.model import build, model_info

    if isinstance(weight_a, bool) or not isinstance(weight_a, (int, float)) \
            or not 0.0 <= weight_a <= 1.0:
        raise BlendError(f"interpolate: the weight must be a number in [0, 1], got "
                         f"{weight_a!r}")
    info_a, info_b = model_info(model_a), model_info(model_b)
    if info_a is None or info_b is None:
        raise BlendError("interpolate: both models must be built by a registered sisr builder")
    if (info_a["builder"], info_a["arguments"]) != (info_b["builder"], info_b["arguments"]):
        raise BlendError(f"interpolate: different architectures, {info_a['builder']} "
                         f"{info_a['arguments']} and {info_b['builder']} {info_b['arguments']}")
    names_a = [(w.path, tuple(w.shape)) for w in model_a.weights]
    names_b = [(w.path, tuple(w.shape)) for w in model_b.weights]
    if names_a != names_b:
        differ = next(((a, b) for a, b in zip(names_a, names_b) if a != b),
                      (len(names_a), len(names_b)))
        raise BlendError(f"interpolate: the models' weights differ ({differ[0]} vs "
                         f"{differ[1]})")
    blended = build(info_a["builder"], **info_a["arguments"])
    if [(v.path, tuple(v.shape)) for v in blended.weights] != names_a:
        raise BlendError(f"interpolate: the models' weights are not those that "
                         f"{info_a['builder']} builds")
    w = float(weight_a)
    blended.set_weights([w * a + (1.0 - w) * b
                         for a, b in zip(model_a.get_weights(), model_b.get_weights())])
    return blended
