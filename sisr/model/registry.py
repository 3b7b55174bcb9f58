"""Names of the model builders, for the CLIs and the tests."""

import dataclasses
import inspect
from typing import Callable

from sisr.model.common import SCALES
from sisr.model.discriminator import discriminator
from sisr.model.edsr import edsr
from sisr.model.srresnet import srresnet
from sisr.model.wdsr_a import wdsr_a
from sisr.model.wdsr_b import wdsr_b


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered builder: its name, function, supported scales and role."""

    name: str
    builder: Callable
    scales: tuple
    generator: bool = True

    def arguments(self):
        """The builder's keyword arguments and their defaults."""
        params = inspect.signature(self.builder).parameters
        return {k: p.default for k, p in params.items()}


MODELS = {
    spec.name: spec
    for spec in (
        ModelSpec("edsr", edsr, SCALES),
        ModelSpec("wdsr_a", wdsr_a, SCALES),
        ModelSpec("wdsr_b", wdsr_b, SCALES),
        ModelSpec("srresnet", srresnet, SCALES),
        ModelSpec("discriminator", discriminator, (), generator=False),
    )
}


def get_spec(name):
    """The registered `ModelSpec` called `name` (also accepts "wdsr-a" spellings)."""
    key = str(name).replace("-", "_").lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return MODELS[key]


def build(name, **kwargs):
    """Builds the registered model `name` with builder keyword arguments `kwargs`."""
    spec = get_spec(name)
    allowed = spec.arguments()
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"{spec.name}: unknown argument(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed)}"
        )
    return spec.builder(**kwargs)
