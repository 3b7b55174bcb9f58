"""sisr.study: small training studies on tiny cells, resumed after an interruption; the
command line; WDSR's normalisation option and the WDSR paper's parameter counts."""

import csv
import json
import logging
import os

import keras
import pytest

from sisr import study
from sisr.model import build, get_spec
from sisr.model.sizing import count_parameters
from sisr.study import __main__ as study_cli
from sisr.study import runner
from sisr.training import config as cfg

# Tiny cells that train in a fraction of a second per step on the demo set.
SRCNN = {"profile": "srcnn", "label": "srcnn tiny", "num_filters": 4,
         "kernel_sizes": [3, 1, 3], "upsampler": "subpixel"}
WDSR = {"profile": "wdsr-b-8", "label": "wdsr-b tiny", "num_filters": 4, "num_res_blocks": 1,
        "res_block_expansion": 2}
COMMON = {"batch_size": 2, "lr_patch": 12, "valid_crop": 24}


class Interrupt(Exception):
    pass


TRAINER = runner._trainer


def interrupting(after_epoch, counter):
    """A `runner._trainer` replacement that counts the trainings started and, for the
    `wdsr_b` cell, stops after epoch `after_epoch` has been saved."""
    def make(config, timer):
        counter.append(config["model"])
        trainer = TRAINER(config, timer)
        if config["model"] != "wdsr_b" or after_epoch is None:
            return trainer

        class Stop(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch + 1 == after_epoch:
                    raise Interrupt()

        callbacks = trainer.callbacks

        def with_stop(*args):
            guard, run_cb, cbs = callbacks(*args)
            return guard, run_cb, [*cbs, Stop()]  # after the run directory's save

        trainer.callbacks = with_stop
        return trainer

    return make


@pytest.mark.slow  # three short trainings
def test_run_tabulates_and_resumes_after_an_interruption(tmp_path, monkeypatch, caplog):
    out = tmp_path / "study"
    started = []
    monkeypatch.setattr(runner, "_trainer", interrupting(1, started))
    with pytest.raises(Interrupt):
        study.run([SRCNN, WDSR], steps=4, epochs=2, seeds=(0,), out_dir=out,
                  overrides=COMMON)
    srcnn_result = out / "srcnn_tiny" / "seed-0.json"
    assert srcnn_result.is_file() and not (out / "wdsr-b_tiny" / "seed-0.json").exists()
    assert (out / "wdsr-b_tiny" / "seed-0" / "backup" / "state.json").is_file()
    stamp = os.stat(srcnn_result).st_mtime_ns

    started.clear()
    monkeypatch.setattr(runner, "_trainer", interrupting(None, started))
    with caplog.at_level(logging.INFO, logger="sisr.study.runner"):
        result = study.run([SRCNN, WDSR], steps=4, epochs=2, seeds=(0,), out_dir=out,
                           overrides=COMMON)
    assert started == ["wdsr_b"]  # the finished cell is not trained again
    assert os.stat(srcnn_result).st_mtime_ns == stamp
    assert "wdsr-b tiny, seed 0: resuming after epoch 1" in caplog.text

    rows = study.rows_of(result)
    assert [row["cell"] for row in rows] == ["srcnn tiny", "wdsr-b tiny"]
    for row, cell in zip(rows, (SRCNN, WDSR)):
        assert list(row) == list(study.COLUMNS)
        assert row["seed"] == 0 and row["steps"] == 4
        assert len(row["val_psnr_per_epoch"]) == 2
        config = cfg.resolve(cell["profile"], {k: v for k, v in cell.items()
                                                if k not in ("profile", "label")})
        model = build(config["model"], **{k: v for k, v in cfg.builder_kwargs(config).items()})
        assert row["parameters"] == model.count_params()
        assert row["model"] == config["model"]
        assert 0 < row["ssim"] <= 1 and 5 < row["psnr"] < 60 and row["time_per_step"] > 0
        assert row["bicubic_psnr"] == rows[0]["bicubic_psnr"]
    # The SRCNN cell (subpixel, 4 and 2 filters, kernels 3-1-3, x2): every conv on LR pixels.
    assert rows[0]["flops_per_lr_pixel"] == 2 * (9 * 3 * 4 + 1 * 4 * 2 + 9 * 2 * 12)
    # The stored row is the one returned.
    assert json.loads(srcnn_result.read_text())["row"] == rows[0]


def test_flops_count_every_conv_at_its_resolution():
    # EDSR x2: the upsampling conv runs on LR pixels, its output is shuffled to HR, and the
    # last conv runs on 4 HR pixels per LR pixel.
    model = build("edsr", scale=2, num_filters=8, num_res_blocks=1)
    lr_convs = 9 * 3 * 8 + 3 * 9 * 8 * 8 + 9 * 8 * 32
    assert study.conv_flops_per_pixel(model) == 2 * (lr_convs + 4 * 9 * 8 * 3)


def write_spec(tmp_path, **spec):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_cli_writes_csv_and_plot_and_keeps_existing_outputs(tmp_path, capsys):
    spec = write_spec(tmp_path, cells=[SRCNN], steps=2, seeds=[3], overrides=COMMON)
    out = tmp_path / "out"
    assert study_cli.main([spec, "--outdir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "srcnn tiny" in printed and f"table: {out / 'study.csv'}" in printed
    with open(out / "study.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["cell"] for row in rows] == ["srcnn tiny"] and rows[0]["seed"] == "3"
    assert list(rows[0]) == list(study.COLUMNS)
    assert (out / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    before = (out / "study.csv").read_bytes()
    assert study_cli.main([spec, "--outdir", str(out)]) == 2
    assert "study.csv exists; not overwriting it (use --force)" in capsys.readouterr().err
    assert study_cli.main([spec, "--outdir", str(out), "--force"]) == 0  # results reused
    assert (out / "study.csv").read_bytes() == before


@pytest.mark.parametrize("spec, message", [
    ({"cells": ["srcnn"], "step": 2}, "unknown key `step`"),
    ({"steps": 2}, "missing key `cells`"),
    ({"cells": []}, "`cells` must be a non-empty list"),
    ({"cells": [{"profile": "srcnn", "num_layerz": 3}]}, "num_layerz (`num_layerz` in "),
    ({"cells": [{"profile": "srcnn", "num_layers": 0}]}, "`num_layers` in "),
    ({"cells": ["no-such-profile"]}, "unknown profile 'no-such-profile'"),
    ({"cells": [{"profile": "srcnn", "seed": 1}]}, "`seed` is set by the study"),
    ({"cells": ["srcnn", "srcnn"]}, "give one a `label`"),
    ({"cells": ["srcnn"], "steps": 5, "epochs": 2}, "multiple of `epochs`"),
    ({"cells": ["srcnn"], "seeds": 1}, "`seeds` must be a list"),
])
def test_a_bad_spec_is_one_line_naming_the_key(tmp_path, capsys, spec, message):
    path = write_spec(tmp_path, **spec)
    out = tmp_path / "out"
    assert study_cli.main([path, "--outdir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert path in err
    assert not out.exists() or not any(out.iterdir())


def test_a_spec_that_is_not_json_is_named(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text("{cells: ")
    assert study_cli.main([str(path)]) == 2
    assert f"error: {path}: not valid JSON" in capsys.readouterr().err


# -- WDSR: the paper's table and the normalisation option --------------------------------
# The WDSR paper's x2 comparison (Yu et al. 2018, docs/reference.md §3): EDSR, WDSR-A and
# WDSR-B with 1, 3, 5 and 8 residual blocks. EDSR has 64 filters; WDSR-A 32 filters and
# expansion 4, WDSR-B 64 filters and expansion 6: the widths at which a block of each has
# the same parameters (73,856 / 73,888 / 74,035), and the counts round to the published
# 0.26 / 0.08 / 0.08 M (1 block) and 0.78 / 0.60 / 0.60 M (8 blocks).
PAPER_CELLS = {
    "edsr": {"num_filters": 64},
    "wdsr_a": {"num_filters": 32, "res_block_expansion": 4},
    "wdsr_b": {"num_filters": 64, "res_block_expansion": 6},
}
PAPER_COUNTS = {  # blocks: (EDSR, WDSR-A, WDSR-B), sisr's (= PyTorch's) trainable counts
    1: (262_019, 79_164, 83_663),
    3: (409_731, 226_940, 231_733),
    5: (557_443, 374_716, 379_803),
    8: (779_011, 596_380, 601_908),
}
PUBLISHED_MILLIONS = {1: (0.26, 0.08, 0.08), 8: (0.78, 0.60, 0.60)}


@pytest.mark.parametrize("blocks", sorted(PAPER_COUNTS))
def test_wdsr_paper_table_parameter_counts(blocks):
    for (name, kwargs), expected in zip(PAPER_CELLS.items(), PAPER_COUNTS[blocks]):
        count = count_parameters(get_spec(name),
                                 {"scale": 2, "num_res_blocks": blocks, **kwargs})
        assert count == expected, (name, blocks)
        if blocks in PUBLISHED_MILLIONS:
            published = PUBLISHED_MILLIONS[blocks][list(PAPER_CELLS).index(name)]
            assert round(count / 1e6, 2) == published, (name, blocks)


@pytest.mark.parametrize("name", ["wdsr_a", "wdsr_b"])
def test_wdsr_normalization(name, tmp_path):
    kwargs = {"scale": 2, "num_filters": 8, "num_res_blocks": 2}
    plain = build(name, **kwargs)
    assert build(name, normalization="none", **kwargs).count_params() == plain.count_params()
    batch = build(name, normalization="batch", **kwargs)
    norms = [layer for layer in batch.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    convs_in_blocks = [layer for layer in plain.layers
                       if isinstance(layer, keras.layers.Conv2D)
                       and layer.name.startswith("block")]
    # One after every conv of the blocks, none in the head, tail or skip branch.
    assert sorted(n.name for n in norms) == sorted(f"{c.name}_bn" for c in convs_in_blocks)
    extra = sum(4 * c.filters for c in convs_in_blocks)
    assert batch.count_params() == plain.count_params() + extra
    path = str(tmp_path / "bn.keras")
    batch.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.get_config()["arguments"]["normalization"] == "batch"
    with pytest.raises(ValueError, match="`normalization` must be one of"):
        build(name, normalization="layer", **kwargs)


def test_a_wdsr_without_weight_norm_refuses_the_weight_norm_optimiser():
    with pytest.raises(cfg.ConfigError, match="normalization none with optimizer "
                       "weight_norm_adam"):
        cfg.resolve("wdsr-b-8", {"normalization": "none"})
    assert cfg.resolve("wdsr-b-8", {"normalization": "batch", "optimizer": "adam"})
