"""sisr.port's formats: found from the registry, detected over the full key set, one
pipeline for all (the outputs themselves are checked in test_port.py and test_krasserm.py).
"""

import os

import numpy as np
import pytest

from sisr import model as sisr_model
from sisr.model import SRModel, model_info
from sisr.port import PortError, describe, formats, port, port_checkpoint, sources
from sisr.port import cli as port_cli
from sisr.port import pipeline
from sisr.port.cli import main, make_parser
from sisr.pretrained.registry import converter_names
from test_krasserm import EXPECTED as KRASSERM_FILES
from test_krasserm import _path as krasserm_path
from test_port import (
    basicsr_edsr_state, conv2d, edsr_pytorch_state, lr_images, pixel_shuffle, relu, run,
    wdsr_state,
)
from test_gan_parts import load as load_gan
from test_gan_parts import prefixed
from toy_port import toy_format

TOL = 1e-3


def z(*shape):
    return np.zeros(shape, np.float32)


def gan_state(name):
    """A BasicSR discriminator's state_dict from tests/data/gan."""
    return prefixed(load_gan(name), "sd/")


def rcan_like_state():
    """EDSR-PyTorch's MeanShift, head and tail around RCAN's residual groups of residual
    channel-attention blocks (body.G.body.B.body.*, conv_du.*)."""
    sd = {k: v for k, v in edsr_pytorch_state(2).items() if not k.startswith("body.")}
    for g in range(2):
        for b in range(2):
            p = f"body.{g}.body.{b}.body"
            sd.update({f"{p}.0.weight": z(8, 8, 3, 3), f"{p}.0.bias": z(8),
                       f"{p}.2.weight": z(8, 8, 3, 3), f"{p}.2.bias": z(8),
                       f"{p}.3.conv_du.0.weight": z(2, 8, 1, 1), f"{p}.3.conv_du.0.bias": z(2),
                       f"{p}.3.conv_du.2.weight": z(8, 2, 1, 1), f"{p}.3.conv_du.2.bias": z(8)})
        sd.update({f"body.{g}.body.2.weight": z(8, 8, 3, 3), f"body.{g}.body.2.bias": z(8)})
    sd.update({"body.2.weight": z(8, 8, 3, 3), "body.2.bias": z(8)})
    return sd


STATES = {
    "edsr-pytorch": lambda: edsr_pytorch_state(4),
    "basicsr-edsr": lambda: basicsr_edsr_state(3),
    "wdsr": lambda: wdsr_state("b", 2, expansion=3),
    "basicsr-unet-discriminator": lambda: gan_state("unet_sn_f4.npz"),
    "basicsr-vgg-discriminator": lambda: gan_state("vgg_disc_f2_128.npz"),
}


@pytest.fixture
def toy():
    """The toy architecture of tests/toy_port, registered with its own format module."""
    spec = sisr_model.register(sisr_model.ModelSpec(
        "toy_sr", toy_format.toy_sr, scales=(2, 3), tiny={"num_filters": 4},
        layouts=(toy_format.LAYOUT,)))
    try:
        yield spec
    finally:
        sisr_model.unregister("toy_sr")


def toy_state(scale=2, feats=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"first.weight": rng.normal(0, 0.1, (feats, 3, 3, 3)).astype(np.float32),
            "first.bias": rng.normal(0, 1, feats).astype(np.float32),
            "last.weight": rng.normal(0, 0.1, (3 * scale * scale, feats, 3, 3)).astype(np.float32),
            "last.bias": rng.normal(0, 1, 3 * scale * scale).astype(np.float32)}


# ------------------------------------------------------------------ from the registry

def test_formats_are_the_layouts_of_the_registered_models():
    union = []
    for spec in sisr_model.MODELS.values():
        union += [name for name in spec.layouts if name not in union]
    assert formats.layouts() == union
    assert set(sources()) == {formats.load(name).NAME for name in union}
    assert set(sources()) == {"edsr-pytorch", "basicsr-edsr", "wdsr", "krasserm",
                              "edsr-pytorch-vdsr", "mdsr-pytorch",
                              "basicsr-rrdb", "esrgan-old", "realesrgan-srvgg",
                              "edsr-pytorch-rcan", "basicsr-rcan", "edsr-pytorch-rdn",
                              "isr-rdn", "basicsr-unet-discriminator",
                              "basicsr-vgg-discriminator"}
    assert converter_names() == sources()
    choices = formats.choices()
    for alias in ("auto", "edsr", "basicsr", "wdsr-a", "wdsr-b", "krasserm", "mdsr", "rcan",
                  "rdn", "isr"):
        assert alias in choices


def test_the_port_cli_accepts_the_registered_formats_only(tmp_path, capsys):
    # --from is checked after parsing (the registry loads Keras; --help does without it).
    parser = make_parser()
    for choice in formats.choices():
        port_cli._check_args(parser, parser.parse_args(["w.npz", "-o", "x.keras",
                                                        "--from", choice]))
    with pytest.raises(SystemExit) as exit_info:
        port_cli._check_args(parser, parser.parse_args(["w.npz", "-o", "x.keras",
                                                        "--from", "nonsense"]))
    assert exit_info.value.code == 2
    assert ", ".join(formats.choices()) in capsys.readouterr().err


def test_a_registered_toy_format_is_dispatched_to(toy, tmp_path, capsys):
    assert "toy" in sources() and "toy-sr" in formats.choices()
    sd = toy_state(scale=3)
    for source in ("auto", "toy", "toy-sr"):
        model = port(sd, source=source)
        assert isinstance(model, SRModel)
        assert model_info(model) == {"builder": "toy_sr", "scale": 3,
                                     "arguments": {"scale": 3, "num_filters": 4}}
    x = lr_images()
    w = {k: v.astype(np.float64) for k, v in sd.items()}
    expected = pixel_shuffle(conv2d(relu(conv2d(x, w["first.weight"], w["first.bias"])),
                                    w["last.weight"], w["last.bias"]), 3)
    assert np.abs(run(model, x) - expected).max() < TOL
    np.savez(tmp_path / "toy.npz", **sd)
    assert main([str(tmp_path / "toy.npz"), "-o", str(tmp_path / "toy.keras")]) == 0
    assert "toy_sr" in capsys.readouterr().out
    with pytest.raises(PortError, match=r"scale: requested 2, the state_dict has 3 \(last"):
        port(sd, scale=2)


def test_an_unregistered_format_is_gone(toy):
    sisr_model.unregister("toy_sr")
    try:
        assert "toy" not in sources()
        with pytest.raises(PortError, match="cannot tell the checkpoint's source"):
            port(toy_state())
        with pytest.raises(PortError, match="unknown source 'toy'"):
            port(toy_state(), source="toy")
    finally:
        sisr_model.register(toy)


# ------------------------------------------------------------------ detection

@pytest.mark.parametrize("name", sorted(STATES))
def test_each_layout_is_detected_by_its_format_alone(name):
    sd = STATES[name]()
    found = [n for n, module in formats.formats().items()
             if not hasattr(module, "read") and module.detect(sd)]
    assert found == [name]
    assert describe(sd).source == name


def test_basicsr_with_another_key_is_not_basicsr_edsr():
    # every BasicSR architecture has conv_first; RRDBNet has conv_hr as well
    sd = basicsr_edsr_state(2)
    sd.update({"conv_hr.weight": z(8, 8, 3, 3), "conv_hr.bias": z(8)})
    assert not formats.get("basicsr-edsr")[0].detect(sd)
    with pytest.raises(PortError) as err:
        port(sd)
    message = str(err.value)
    assert "cannot tell the checkpoint's source" in message
    assert "the closest is basicsr-edsr (2 unexpected key(s): conv_hr.bias, conv_hr.weight)" \
        in message
    with pytest.raises(PortError, match=r"unexpected key\(s\).*conv_hr\.bias, conv_hr\.weight"):
        port(sd, source="basicsr-edsr")


def test_rcan_keys_are_read_as_rcan_not_edsr():
    sd = rcan_like_state()
    assert not formats.get("edsr-pytorch")[0].detect(sd)
    assert formats.get("edsr-pytorch-rcan")[0].detect(sd)
    model = port(sd)
    assert model.builder == "rcan"
    assert model.arguments == {"scale": 2, "num_groups": 2, "num_blocks": 2,
                               "num_filters": 8, "reduction": 4}
    with pytest.raises(PortError):
        port(sd, source="edsr-pytorch")


def test_rcan_with_a_missing_key_is_refused_naming_the_closest_layout():
    sd = rcan_like_state()
    del sd["body.1.body.1.body.3.conv_du.2.bias"]
    with pytest.raises(PortError) as err:
        port(sd)
    assert ("the closest is edsr-pytorch-rcan (1 missing key(s): "
            "body.1.body.1.body.3.conv_du.2.bias)") in str(err.value)


def test_unknown_keys_are_refused_naming_the_closest_layout():
    with pytest.raises(PortError, match=r"its 1 key\(s\) match no known layout .*the closest "
                                        r"is .*1 unexpected key\(s\): foo\.weight"):
        port({"foo.weight": z(3)})


def test_a_checkpoint_two_layouts_accept_is_refused(toy, monkeypatch):
    monkeypatch.setattr(toy_format, "detect", lambda state: True)
    with pytest.raises(PortError, match=r"matches more than one layout: wdsr, toy; pass one"):
        port(wdsr_state("a", 2))
    assert port(wdsr_state("a", 2), source="wdsr").name == "wdsr_a"


def test_a_krasserm_file_is_detected_from_the_file(tmp_path, capsys):
    out = tmp_path / "srresnet.keras"
    assert main([krasserm_path("srresnet_x4_tf2"), "-o", str(out)]) == 0
    assert "srresnet" in capsys.readouterr().out
    assert describe(krasserm_path("wdsr_b_x3_tf2")).source == "krasserm"


# ------------------------------------------------------------------ one pipeline

@pytest.mark.parametrize("name", sorted(STATES))
def test_every_ported_state_dict_is_an_srmodel_with_its_record(name):
    ported = port_checkpoint(STATES[name]())
    info = model_info(ported.model)
    assert isinstance(ported.model, SRModel) and info is not None
    assert info["builder"] == ported.plan.model
    assert ported.plan.args.items() <= info["arguments"].items()


@pytest.mark.parametrize("stem", sorted(KRASSERM_FILES))
def test_every_ported_krasserm_model_is_an_srmodel_with_its_record(stem):
    model = port(krasserm_path(stem), res_block_scaling=0.5 if "edsr_x3" in stem else None)
    builder, args = KRASSERM_FILES[stem]
    info = model_info(model)
    assert isinstance(model, SRModel) and info["builder"] == builder
    assert args.items() <= info["arguments"].items()


def test_the_tanh_edsr_generator_is_a_registered_builder_saved_in_safe_mode(tmp_path):
    from sisr.saving import load_model, save_model

    model = port(krasserm_path("edsr_gen_x4_keras2"))
    assert model_info(model)["arguments"]["output_activation"] == "tanh"
    rebuilt = sisr_model.build("edsr", **model_info(model)["arguments"])
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in model.weights]
    save_model(model, str(tmp_path / "gen.keras"))
    loaded = load_model(str(tmp_path / "gen.keras"))  # safe mode
    assert model_info(loaded) == model_info(model)
    x = np.full((1, 5, 4, 3), 1e4, np.float32)
    assert np.array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def test_the_pipeline_names_an_unused_key_and_an_unfilled_layer():
    sd = edsr_pytorch_state(2)
    plan = describe(sd)
    plan.fills = [f for f in plan.fills if f.layer != "body_conv"]
    with pytest.raises(PortError, match=r"unexpected key\(s\).*: body\.2\.bias, body\.2\.weight$"):
        pipeline.run(plan)
    plan.checked_keys += ("body.2.weight", "body.2.bias")
    with pytest.raises(PortError, match=r"no weights in the state_dict for sisr layer\(s\) "
                                        r"body_conv$"):
        pipeline.run(plan)
    plan = describe(sd)
    plan.fills[0].layer = "nowhere"
    with pytest.raises(PortError, match=r"head\.0\.weight .*: the sisr edsr model has no "
                                        r"layer 'nowhere'"):
        pipeline.run(plan)


def test_requested_arguments_are_checked_naming_the_keys():
    with pytest.raises(PortError, match=r"res_block_expansion: requested 4, the state_dict "
                                        r"has 3 \(body\.0\.body\.0 "):
        port(wdsr_state("a", 2, expansion=3), res_block_expansion=4)
    with pytest.raises(PortError, match="hr_size: edsr has no such argument"):
        port(edsr_pytorch_state(2), hr_size=96)
    with pytest.raises(TypeError, match="unknown argument"):
        port(edsr_pytorch_state(2), filters=8)


# ------------------------------------------------------------------ the CLI

def test_cli_set_gives_builder_arguments(tmp_path, capsys):
    from sisr.saving import load_model

    np.savez(tmp_path / "w.npz", **wdsr_state("a", 2))
    out = tmp_path / "w.keras"
    assert main([str(tmp_path / "w.npz"), "--set", "res_block_scaling=0.1", "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith("residual scaling 0.1 (given)")
    assert load_model(out).get_layer("block1_scale").scaling == pytest.approx(0.1)
    for argv, message in ((["--set", "num_filters=16"], "num_filters: requested 16"),
                          (["--set", "bogus=1"], "no registered model has such an argument"),
                          (["--set", "res_block_scaling"], "--set expects KEY=VALUE"),
                          (["--model", "edsr"], "model: requested 'edsr'")):
        bad = tmp_path / "bad.keras"
        assert main([str(tmp_path / "w.npz"), *argv, "-o", str(bad)]) == 2
        assert message in capsys.readouterr().err
        assert not os.path.exists(bad)
    with pytest.raises(SystemExit):  # the per-architecture flags are gone
        main([str(tmp_path / "w.npz"), "--num-filters", "8", "-o", str(tmp_path / "x.keras")])
