"""Whether the networks of a training fit in this machine's memory, judged before any is
built (`sisr.model.sizing` counts their parameters without allocating them)."""


from sisr._backend import machine_memory
from sisr.model import sizing
from sisr.training.config import ConfigError

# Bytes per parameter while training: float32 weights, their gradients, Adam's two moments
# and the float32 copy that is validated and saved. Activations come on top.
BYTES_PER_PARAMETER = 20


def _size(nbytes):
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    value, unit = float(nbytes), 0
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    return f"{value:.3g} {units[unit]}"


def check_fits(networks, origins=None, memory=None):
    """Raises ConfigError if a network's builder refuses its arguments or the networks'
    weights and optimiser state would not fit in `memory` bytes (default:
    `machine_memory()`).

    Args:
        networks: `(spec, kwargs, keys)` of each network trained: its registry entry, its
            builder arguments, and the configuration key of each argument (for messages).
        origins: configuration key -> where its value came from (`Configuration.origins`).
    """
    memory = machine_memory() if memory is None else memory
    if not memory:
        return
    origins = origins or {}
    budget = memory // BYTES_PER_PARAMETER

    def refuse(spec, kwargs, keys, parameters, driver, more=False):
        key = keys.get(driver, driver)
        where = origins.get(key, f"`{key}` {kwargs[driver]!r}") if driver else \
            f"model {spec.name}"
        need = _size(parameters * BYTES_PER_PARAMETER)
        raise ConfigError(
            f"{where}: the {spec.name} model would need {'more than' if more else '~'}"
            f"{' ' if more else ''}{need} for its weights and optimiser state; this machine "
            f"has {_size(memory)}")

    def check(spec, kwargs, keys, limit=-1):
        refused = sizing.refused_argument(spec, kwargs, limit)
        if refused is not None:
            argument, error = refused
            key = keys.get(argument, argument)
            where = origins.get(key, f"`{key}`") if argument else f"model {spec.name}"
            raise ConfigError(f"{where}: {error}")

    estimates = []
    for spec, kwargs, keys in networks:
        check(spec, kwargs, keys)  # the builder's own checks, as `config.resolve` runs them
        estimate = sizing.estimate_parameters(spec, kwargs)
        estimates.append(estimate)
        if estimate is not None and estimate.parameters > budget:
            refuse(spec, kwargs, keys, estimate.parameters, estimate.driver)
    # The estimates fit (or there are none): count exactly, stopping at the budget.
    for (spec, kwargs, keys), estimate in zip(networks, estimates):
        driver = estimate.driver if estimate else None
        try:
            budget -= sizing.count_parameters(spec, kwargs, limit=budget)
        except sizing.LimitExceeded as err:
            refuse(spec, kwargs, keys, err.count, driver, more=True)
        except Exception as err:  # refused by the builder after its first weight
            check(spec, kwargs, keys, limit=budget)
            raise ConfigError(f"model {spec.name}: {err}") from None
