"""Builder arguments are checked and models sized without building them, for every
registered architecture and one registered later (`sisr.model.sizing`,
`sisr.training.memory`)."""

import json

import keras
import pytest
from toy_port import attention

from sisr.model import MODELS
from sisr.model import sizing
from sisr.training import config as cfg
from sisr.training import memory
from sisr.training.config import ConfigError

GiB = 2**30


@pytest.fixture
def toy():
    with attention.registered() as spec:
        yield spec


def arguments(spec, **changes):
    kwargs = dict(spec.tiny, **changes)
    if spec.scales:
        kwargs["scale"] = min(spec.scales)
    return kwargs


def test_counts_are_exact_and_allocate_nothing(toy):
    for spec in MODELS.values():
        kwargs = arguments(spec)
        built = spec.builder(**kwargs)
        assert sizing.count_parameters(spec, kwargs) == built.count_params(), spec.name
    # Width that could never be allocated is counted from shapes alone.
    spec = MODELS["edsr"]
    huge = sizing.count_parameters(spec, arguments(spec, num_filters=10**8))
    assert huge > 9 * 10**16
    with pytest.raises(sizing.LimitExceeded):
        sizing.count_parameters(spec, arguments(spec, num_filters=10**8), limit=10**6)


def test_estimates_extrapolate_from_probes(toy):
    # Exact where the count is polynomial in the integer arguments (convolution widths,
    # block counts, expansions): checked against exact counts of larger configurations.
    cases = [("edsr", {"num_filters": 40, "num_res_blocks": 9}),
             ("wdsr_a", {"num_filters": 20, "num_res_blocks": 7, "res_block_expansion": 7}),
             ("srresnet", {"num_filters": 30, "num_res_blocks": 10}),
             ("discriminator", {"hr_size": 96, "num_filters": 16}),
             ("toy_attention", {"num_filters": 64})]
    for name, changes in cases:
        spec = MODELS[name]
        kwargs = arguments(spec, **changes)
        estimate = sizing.estimate_parameters(spec, kwargs)
        assert estimate.parameters == sizing.count_parameters(spec, kwargs), name
    # A depth that would take hours to build is estimated from a few small builds.
    spec = MODELS["edsr"]
    estimate = sizing.estimate_parameters(spec, arguments(spec, num_res_blocks=10**9))
    per_block = 2 * (9 * 8 * 8 + 8)
    assert estimate.driver == "num_res_blocks"
    assert abs(estimate.parameters - 10**9 * per_block) < 10**6


@pytest.mark.parametrize("key, value", [("num_filters", "abc"), ("num_filters", 2.5),
                                        ("num_filters", 0), ("reduction", "x"),
                                        ("reduction", 0)])
def test_a_toy_architecture_without_checks_is_checked_too(toy, tmp_path, key, value):
    # Its builder checks nothing itself: Keras' layers (or Python) refuse the values.
    profile = tmp_path / "toy.json"
    profile.write_text(json.dumps({"model": "toy_attention", "num_filters": 8,
                                   "reduction": 2, key: value}))
    with pytest.raises(ConfigError) as refused:
        config = cfg.resolve(str(profile))
        memory.check_fits([(toy, cfg.builder_kwargs(config), {})], config.origins,
                          memory=16 * GiB)
    message = str(refused.value)
    assert f"`{key}` in profile {profile}" in message and "\n" not in message


def test_memory_refusals_name_the_argument_and_the_estimate(toy):
    spec = MODELS["toy_attention"]
    kwargs = arguments(spec, num_filters=10**6)
    origins = {"num_filters": "--set num_filters=1000000"}
    with pytest.raises(ConfigError, match=r"--set num_filters=1000000: the toy_attention "
                       r"model would need ~\d.* TiB .*this machine has 16 GiB"):
        memory.check_fits([(spec, kwargs, {})], origins, memory=16 * GiB)
    memory.check_fits([(spec, arguments(spec, num_filters=64), {})], memory=16 * GiB)
    # The budget is shared by the networks of one training.
    edsr = MODELS["edsr"]
    small = arguments(edsr, num_filters=64, num_res_blocks=16)
    parameters = sizing.count_parameters(edsr, small)
    fits = parameters * memory.BYTES_PER_PARAMETER * 3 // 2
    memory.check_fits([(edsr, small, {})], memory=fits)
    with pytest.raises(ConfigError, match="would need"):
        memory.check_fits([(edsr, small, {}), (edsr, small, {})], memory=fits)


def test_nothing_is_left_for_keras_to_initialise():
    from keras.src.backend.common import global_state

    spec = MODELS["edsr"]
    sizing.count_parameters(spec, arguments(spec, num_filters=10**8))
    sizing.builder_error(spec, arguments(spec, num_filters=10**8))
    # A later StatelessScope initialises Keras' deferred variables on exit: none of ours.
    assert not global_state.get_global_attribute("uninitialized_variables")
    with keras.StatelessScope():
        pass
