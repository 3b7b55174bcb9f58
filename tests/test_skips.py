"""tests/skips.py: a skip fails the run unless a marked test lacks a declared optional extra."""

import configparser
import os
import subprocess
import sys

import pytest

import skips

HERE = os.path.dirname(os.path.abspath(__file__))
TORCH_MISSING = "could not import 'torch': No module named 'torch'"
MARKED = "@pytest.mark.optional_extra('torch')\n"


def run_pytest(tmp_path, source, allow=False):
    (tmp_path / "conftest.py").write_text(
        "from skips import (pytest_collectreport, pytest_configure, "
        "pytest_runtest_makereport, pytest_sessionfinish, pytest_terminal_summary)\n")
    (tmp_path / "test_case.py").write_text("import pytest\n\n" + source)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    env.pop("SISR_ALLOW_SKIPS", None)
    if allow:
        env["SISR_ALLOW_SKIPS"] = "1"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--rootdir", str(tmp_path), str(tmp_path)], cwd=str(tmp_path),
                            env=env, capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("source,status", [
    ("def test_a():\n    pytest.skip('no data here')\n", 1),
    ("@pytest.mark.skipif(True, reason='not today')\ndef test_a():\n    pass\n", 1),
    (f"def test_a():\n    pytest.skip({TORCH_MISSING!r})\n", 1),  # not marked
    (MARKED + f"def test_a():\n    pytest.skip({TORCH_MISSING!r})\n", 0),
    ("@pytest.mark.optional_extra('torch')\ndef test_a():\n    pytest.skip('no data here')\n",
     1),
    ("pytest.skip('no data here', allow_module_level=True)\n\ndef test_a():\n    pass\n", 1),
    (f"pytest.skip({TORCH_MISSING!r}, allow_module_level=True)\n\ndef test_a():\n    pass\n",
     5),  # no test collected: pytest's own status, which .ci/run accepts
    ("def test_a():\n    pass\n", 0),
])
def test_only_a_declared_optional_extra_may_skip(tmp_path, source, status):
    code, output = run_pytest(tmp_path, source)
    assert code == status, output
    if status == 1:
        assert "skipped (" in output, output


def test_skips_can_be_allowed_for_a_partial_environment(tmp_path):
    code, output = run_pytest(tmp_path, "def test_a():\n    pytest.skip('no data here')\n",
                              allow=True)
    assert code == 0 and "1 skipped" in output, output


def test_declared_optional_extras_are_extras_the_test_command_does_not_install():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(os.path.dirname(HERE), "setup.cfg"))
    extras = cfg["options.extras_require"]
    test_extra = extras["test"]
    for extra in skips.OPTIONAL_EXTRAS:
        assert extra in extras, extra
        assert extra not in test_extra, extra
