"""The architecture registry: everything sisr knows about a network, declared once.

A network's module builds it and registers it:

    register(ModelSpec("edsr", edsr, tiny={"num_filters": 8, "num_res_blocks": 2},
                       float32_layers=("normalize", "head_*"), layouts=("edsr-pytorch",)))

The CLIs' choices, the port's dispatch, bf16 copies, tiling, the GAN trainer and the
contract tests all read `MODELS`; nothing else lists architectures
(docs/adding-an-architecture.md).
"""

import dataclasses
import inspect
import types
from collections.abc import Callable

SCALES = (2, 3, 4, 8)  # the scales of every generator builder unless a spec says otherwise


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered architecture.

    Attributes:
        name: the builder's name (`SRModel.builder`, `--set model=...`, profiles' "model").
        builder: `builder(scale, ...) -> SRModel` (the discriminator takes no scale).
        scales: the scales the builder accepts; () for a model without one.
        tiny: builder arguments (besides `scale`) of a small configuration that takes the
            same code paths; the contract tests build it.
        generator: an SR network (LR RGB [0, 255] in, SR RGB [0, 255] out); False for a
            discriminator.
        gan_generator: the SRGAN trainer may fine-tune it (`train_gan --generator`).
        float32_layers: layer-name patterns (fnmatch) that a bfloat16 inference copy keeps
            in float32 (`sisr.precision`); () = every layer in bfloat16.
        local: every operation reads a bounded neighbourhood, so tiled inference equals
            whole-image inference; False = tiling is refused.
        layouts: names of the checkpoint layouts the port reads into it (`sisr.port`).
        aliases: other spellings accepted by `get_spec` (besides "-" for "_").
        at_scale: for a multi-scale builder (`scale=None` builds one output per scale,
            MDSR): `at_scale(model, scale)` -> the single-scale model of one of its
            scales, sharing its weights; None for single-scale builders.
    """

    name: str
    builder: Callable
    scales: tuple = SCALES
    tiny: dict = dataclasses.field(default_factory=dict)
    generator: bool = True
    gan_generator: bool = False
    float32_layers: tuple = ()
    local: bool = True
    layouts: tuple = ()
    aliases: tuple = ()
    at_scale: Callable = None

    def __post_init__(self):
        # Read-only, so that a spec cannot be changed behind the registry's back.
        object.__setattr__(self, "tiny", types.MappingProxyType(dict(self.tiny)))

    def arguments(self):
        """The builder's keyword arguments and their defaults."""
        params = inspect.signature(self.builder).parameters
        return {k: p.default for k, p in params.items()}

    def build_tiny(self, scale=None, **overrides):
        """The tiny configuration at `scale` (default: the smallest supported)."""
        kwargs = dict(self.tiny, **overrides)
        if self.scales:
            kwargs["scale"] = min(self.scales) if scale is None else scale
        return self.builder(**kwargs)


# name -> ModelSpec, in registration order. Filled by the builders' modules, which
# `sisr.model` imports.
MODELS = {}


def _key(name):
    return str(name).replace("-", "_").lower()


def register(spec):
    """Adds `spec` to `MODELS`; returns it. A name or alias may be registered once."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"register: expected a ModelSpec, got {type(spec).__name__}")
    taken = {_key(n) for s in MODELS.values() for n in (s.name, *s.aliases)}
    clash = sorted({_key(n) for n in (spec.name, *spec.aliases)} & taken)
    if clash:
        raise ValueError(f"register: {', '.join(clash)} is already registered")
    MODELS[spec.name] = spec
    return spec


def unregister(name):
    """Removes the spec called `name` (for tests that register a toy architecture)."""
    MODELS.pop(get_spec(name).name)


def get_spec(name):
    """The registered `ModelSpec` called `name` (also accepts "wdsr-a" and alias spellings)."""
    key = _key(name)
    for spec in MODELS.values():
        if key in (_key(spec.name), *map(_key, spec.aliases)):
            return spec
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")


def generators():
    """Names of the registered SR networks (not discriminators)."""
    return [name for name, spec in MODELS.items() if spec.generator]


def spec_of(model):
    """The `ModelSpec` of a model built by a registered builder, else None."""
    builder = getattr(model, "builder", None)
    if not builder:
        return None
    try:
        return get_spec(builder)
    except ValueError:
        return None


def is_multi_scale(model):
    """True for a model of a multi-scale builder built with every scale (`scale` None)."""
    spec = spec_of(model)
    return spec is not None and spec.at_scale is not None \
        and model.arguments.get("scale") is None


def single_scale(model, scale=None):
    """`model` itself, or the single-scale model at `scale` of a multi-scale model (its
    builder's `at_scale`); ValueError for a multi-scale model without a `scale`."""
    spec = spec_of(model)
    if spec is None or spec.at_scale is None:
        return model
    own = model.arguments.get("scale")
    if scale is None and own is None:
        raise ValueError(f"{model.name} is a multi-scale model (scales "
                         f"{model.arguments.get('branch_scales')}): give a scale")
    return spec.at_scale(model, own if scale is None else scale)


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
