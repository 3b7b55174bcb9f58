"""Denoise strength of a pretrained pair (Real-ESRGAN's `-dn`): one model whose weights are
interpolated between a strong-denoising entry and its `weak_denoise` partner.

    model = denoise_model("realesr-general-x4v3", 0.5)

Strength 1 is the named model itself, 0 its weak-denoising partner
(`realesr-general-wdn-x4v3`), as Real-ESRGAN's inference_realesrgan.py blends
`dni_weight = [strength, 1 - strength]` over (realesr-general-x4v3,
realesr-general-wdn-x4v3).
"""

from sisr.pretrained.registry import PretrainedError, get_entry, load_registry


def denoise_partner(name, registry=None):
    """The `weak_denoise` partner of the entry `name`; `PretrainedError` if it has none."""
    entry = get_entry(name, registry)
    if entry.weak_denoise is None:
        pairs = [n for n, e in load_registry(registry).items() if e.weak_denoise]
        raise PretrainedError(f"{name} has no denoise strength to choose (no weak_denoise "
                              f"partner); models that have one: {', '.join(pairs) or 'none'}")
    return entry.weak_denoise


def denoise_model(name, strength, registry=None):
    """The entry `name` blended with its weak-denoising partner: weights
    `strength * name + (1 - strength) * partner` (both fetched, see `sisr.pretrained.load`).
    """
    from sisr.blend import interpolate
    from sisr.pretrained.cache import load

    if isinstance(strength, bool) or not isinstance(strength, (int, float)) \
            or not 0.0 <= strength <= 1.0:
        raise PretrainedError(f"denoise strength must be a number in [0, 1], got {strength!r}")
    partner = denoise_partner(name, registry)
    strong = load(name, registry=registry)
    if strength == 1:
        return strong
    return interpolate(strong, load(partner, registry=registry), strength)
