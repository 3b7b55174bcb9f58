"""What a user asks of a port: the model, builder arguments and a training profile, merged
the same way for every source of weights."""

from sisr.port.plan import PortError


def model_name(name):
    """A model name as the registry spells it ("wdsr-a" -> "wdsr_a", aliases such as
    "srgan" -> "srresnet"), the name itself if no model has it, or None."""
    if name is None:
        return None
    from sisr.model import get_spec

    try:
        return get_spec(name).name
    except ValueError:
        return str(name).replace("-", "_").lower()


def with_profile(profile, model, requested, keys, error=PortError):
    """Merges a training profile into a request; returns (model, requested, profile values).

    Arguments given explicitly win over the profile's (a profile's scale is a default);
    a model that contradicts the profile's raises `error`.
    """
    from sisr.training.config import ConfigError, load_profile

    try:
        values = load_profile(profile)[1]
    except ConfigError as err:
        raise error(str(err)) from None
    prof_model = values.get("model")
    if model is not None and prof_model is not None and \
            model_name(model) != model_name(prof_model):
        raise error(f"model {model!r} contradicts profile {profile!r} (model {prof_model!r})")
    requested = dict(requested)
    for key in keys:
        if requested.get(key) is None and values.get(key) is not None:
            requested[key] = values[key]
    return (model if model is not None else prof_model), requested, values
