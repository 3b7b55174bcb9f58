"""The checkpoint formats the port reads: one module per layout, found from the registry.

The formats are the union of `spec.layouts` over `sisr.model.MODELS`. A layout name maps
to the module `sisr.port.formats.<name with - as _>`, or, if it has a dot, to that module
path (an architecture registered elsewhere brings its own format module). A format
module has:

    NAME                  the --from name, e.g. "edsr-pytorch"
    ALIASES               {other --from spelling: the model it requests, or None}
    detect(state) -> bool the checkpoint is exactly this layout (its full key set)
    describe(state, **options) -> sisr.port.plan.Plan
    expected_keys(state)  optional: the keys this layout would have (names the closest
                          layout when nothing matches)
    PARAM_KEYS            optional: entries of a wrapped state_dict file to prefer
                          (Real-ESRGAN's "params_ema")
    sniff(path), read(path, **options)
                          optional: a file format of its own (default: a PyTorch
                          state_dict read by `sisr.port.io.load_state_dict`)
"""

import importlib

from sisr.port.plan import PortError

AUTO = "auto"
# How many differing keys a refusal names (of each kind).
SHOWN = 4


def _key(name):
    return str(name).lower().replace("_", "-")


def layouts():
    """The layout names of the registered models, in registration order."""
    from sisr.model import MODELS

    names = []
    for spec in MODELS.values():
        names += [name for name in spec.layouts if name not in names]
    return names


def module_path(layout):
    """The module of a layout name."""
    if "." in layout:
        return layout
    return f"{__name__}.{layout.replace('-', '_')}"


def load(layout):
    """The format module of a layout name, checked to have the contract's names."""
    try:
        module = importlib.import_module(module_path(layout))
    except ImportError as err:
        raise PortError(f"layout {layout!r}: cannot import its format module "
                        f"{module_path(layout)} ({err})") from None
    missing = [name for name in ("NAME", "detect", "describe") if not hasattr(module, name)]
    if missing:
        raise PortError(f"format module {module.__name__} has no {', '.join(missing)}")
    return module


def formats():
    """{NAME: format module} of every registered layout."""
    modules = {}
    for layout in layouts():
        module = load(layout)
        modules.setdefault(module.NAME, module)
    return modules


def names():
    """The format names (`--from` choices besides aliases and "auto")."""
    return tuple(formats())


def choices():
    """Every accepted `--from` value: "auto", the format names and their aliases."""
    result = [AUTO]
    for name, module in formats().items():
        result += [name] + [a for a in getattr(module, "ALIASES", {}) if a not in result]
    return result


def get(source):
    """(format module, model it requests or None) of a `--from` name or alias."""
    key = _key(source)
    for name, module in formats().items():
        if key == _key(name):
            return module, None
        for alias, model in getattr(module, "ALIASES", {}).items():
            if key == _key(alias):
                return module, model
    raise PortError(f"unknown source {source!r}; choose one of {', '.join(choices())}")


def reader(module):
    """The function that reads a file for `module` (`path, **options -> state`)."""
    read = getattr(module, "read", None)
    if read is not None:
        return read
    from sisr.port.io import load_state_dict

    prefer = tuple(getattr(module, "PARAM_KEYS", ()))
    return lambda path, param_key=None, **options: load_state_dict(
        path, param_key=param_key, prefer=prefer, quiet=options.get("quiet", False))


def owner(path):
    """The formats that read `path`: those whose `sniff` accepts it, else the state_dict
    formats (those without a reader of their own)."""
    modules = list(formats().values())
    sniffed = [m for m in modules if hasattr(m, "sniff") and m.sniff(path)]
    return sniffed or [m for m in modules if not hasattr(m, "read")]


def _overlap(module, keys, state):
    """(shared, missing, unexpected) keys of `state` against `module`'s layout; all empty
    for a format that cannot say which keys it expects."""
    expected = getattr(module, "expected_keys", None)
    try:
        wanted = set(expected(state)) if expected is not None else None
    except (PortError, ValueError, TypeError):
        wanted = None
    if wanted is None:
        return set(), set(), set()
    return wanted & keys, wanted - keys, keys - wanted


def _listed(what, keys):
    keys = sorted(keys)
    shown = ", ".join(keys[:SHOWN]) + (", ..." if len(keys) > SHOWN else "")
    return f"{len(keys)} {what}: {shown}"


def detect(state, candidates, options=None):
    """The one format among `candidates` whose `detect` accepts `state`.

    Raises PortError if none or several do: it names the closest layout (most keys in
    common), the keys that differ, and what that layout's `describe` finds wrong.
    """
    found = [m for m in candidates if m.detect(state)]
    if len(found) == 1:
        return found[0]
    if found:
        raise PortError(f"the checkpoint matches more than one layout: "
                        f"{', '.join(m.NAME for m in found)}; pass one of them as source "
                        "(--from)")
    keys = set(state.keys())
    scored = []
    for module in candidates:
        shared, missing, unexpected = _overlap(module, keys, state)
        union = len(shared) + len(missing) + len(unexpected)
        scored.append((len(shared) / union if union else 0.0, module, missing, unexpected))
    if not scored:
        raise PortError("cannot tell the checkpoint's source: no registered layout reads it")
    _, closest, missing, unexpected = max(scored, key=lambda s: s[0])
    differ = "; ".join(_listed(what, ks) for what, ks in (
        ("missing key(s)", missing), ("unexpected key(s)", unexpected)) if ks)
    message = (f"cannot tell the checkpoint's source: its {len(keys)} key(s) match no known "
               f"layout ({', '.join(m.NAME for m in candidates)}); the closest is "
               f"{closest.NAME}" + (f" ({differ})" if differ else ""))
    reason = diagnose(closest, state, options)
    raise PortError(message + (f": {reason}" if reason else ""))


def diagnose(module, state, options=None):
    """What `module` finds wrong with `state` (its describe's error, or the keys the plan
    leaves unused or misses), or None."""
    from sisr.port.pipeline import check_keys

    try:
        check_keys(module.describe(state, **(options or {})))
    except PortError as err:
        return str(err)
    return None
