"""Packaging: extras, conda environments, the import-time TensorFlow check, CI script."""

import configparser
import os
import re
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    return cfg


def requirement_names(block):
    return [re.split(r"[\[<>=~! ]", line.strip())[0] for line in block.strip().splitlines()
            if line.strip()]


def test_cpu_and_gpu_extras_never_overlap():
    extras = read_setup_cfg()["options.extras_require"]
    cpu, gpu = extras["cpu"].strip(), extras["gpu"].strip()
    assert cpu.startswith("tensorflow-cpu==2.21")
    assert gpu.startswith("tensorflow[and-cuda]==2.21")
    # Neither the base requirements nor any other extra pulls in a TensorFlow build.
    install_requires = requirement_names(read_setup_cfg()["options"]["install_requires"])
    assert not any(name.startswith("tensorflow") for name in install_requires)
    for extra, block in extras.items():
        if extra not in ("cpu", "gpu"):
            assert not any(n.startswith("tensorflow") for n in requirement_names(block)), extra


def test_keras_floor_avoids_advisories():
    install_requires = read_setup_cfg()["options"]["install_requires"]
    assert "keras>=3.13.2" in install_requires


def parse_environment(path):
    """Returns (name, pip lines) of a conda environment file (a tiny YAML subset)."""
    name, pip_lines, in_pip = None, [], False
    with open(path) as f:
        for raw in f:
            line = raw.rstrip()
            if line.startswith("name:"):
                name = line.split(":", 1)[1].strip()
            elif line.strip() == "- pip:":
                in_pip = True
            elif in_pip and line.strip().startswith("- "):
                pip_lines.append(line.strip()[2:].strip().strip("'\""))
    return name, pip_lines


def test_conda_environments_agree_with_setup_cfg():
    python_requires = read_setup_cfg()["options"]["python_requires"]
    assert python_requires == ">=3.11"
    for flavour in ("cpu", "gpu"):
        path = os.path.join(ROOT, f"environment-{flavour}.yml")
        name, pip_lines = parse_environment(path)
        assert name == "sisr"
        assert pip_lines == [f"-e .[{flavour}]"], pip_lines
        with open(path) as f:
            text = "".join(line for line in f if not line.lstrip().startswith("#"))
        assert re.search(r"- python=3\.11", text)
        assert "tensorflow" not in text.replace(f"-e .[{flavour}]", ""), (
            f"{path} must take TensorFlow from setup.cfg's [{flavour}] extra only"
        )


def test_import_without_tensorflow_names_the_extra():
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'tensorflow' or name.startswith('tensorflow.'):\n"
        "            raise ImportError('No module named ' + repr(name))\n"
        "sys.meta_path.insert(0, Block())\n"
        "import sisr\n"
    )
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode != 0
    assert "sisr needs TensorFlow" in result.stderr
    assert 'sisr[cpu]' in result.stderr and 'sisr[gpu]' in result.stderr


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read()
    match = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```", readme, re.S)
    assert match, "README.md must mark its test command with <!-- test-command -->"
    command = match.group(1).strip()
    assert command in ci
    # Then the slow tier, which the default run leaves out, and the linter.
    assert "python -m pytest -q -m slow" in ci and "ruff check ." in ci
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        pytest_options = tomllib.load(f)["tool"]["pytest"]["ini_options"]
    assert pytest_options["addopts"] == "-m 'not slow'"


def _copy_source(destination):
    """The files a wheel is built from (as git tracks them), without build leftovers."""
    import shutil

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), destination)
    shutil.copytree(os.path.join(ROOT, "sisr"), os.path.join(destination, "sisr"),
                    symlinks=True, ignore=ignore)


def test_the_wheel_ships_profiles_and_data_and_runs_outside_the_checkout(tmp_path):
    import zipfile

    source, wheels, site = tmp_path / "src", tmp_path / "wheels", tmp_path / "site"
    source.mkdir()
    _copy_source(source)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "--no-index",
                          str(source), "-w", str(wheels)], check=True, capture_output=True)
    [wheel] = list(wheels.iterdir())
    names = set(zipfile.ZipFile(wheel).namelist())
    profiles = sorted(n for n in os.listdir(os.path.join(ROOT, "sisr", "profiles"))
                      if n.endswith(".json"))
    assert profiles and {f"sisr/profiles/{n}" for n in profiles} <= names
    demo = os.listdir(os.path.join(ROOT, "sisr", "data", "demo"))
    assert {f"sisr/data/demo/{n}" for n in demo} <= names
    assert "sisr/pretrained/registry.json" in names
    assert not any(n.startswith(("tests/", "profiles/", "benchmarks/")) for n in names)

    # Installed (not editable) and run from elsewhere, it finds its own profiles.
    subprocess.run(pip + ["install", "--no-deps", "--no-index", "--target", str(site),
                          str(wheel)], check=True, capture_output=True)
    code = ("import sisr, sisr.training.config as c; print(sisr.__file__); "
            "print(c.load_profile('wdsr-a-32')[1]['model']); print(len(c.list_profiles()))")
    env = dict(os.environ, PYTHONPATH=str(site))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    where, model, count = run.stdout.split()
    assert where.startswith(str(site)) and model == "wdsr_a" and int(count) == len(profiles)

    # Console scripts beside `python -m`: each names a module's `main`, which exists.
    [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = dict(line.split(" = ") for line in zipfile.ZipFile(wheel).read(
        entry_points).decode().splitlines() if " = " in line)
    assert {"sisr-train", "sisr-upscale", "sisr-evaluate", "sisr-pretrained", "sisr-port",
            "sisr-convert", "sisr-export", "sisr-train-gan"} == set(scripts)
    for script in ("sisr-convert", "sisr-upscale"):
        module, function = scripts[script].split(":")
        run = subprocess.run([sys.executable, "-c", (
            f"import sys; from {module} import {function}; sys.exit({function}(['--help']))")],
            capture_output=True, text=True, cwd=tmp_path, env=env)
        assert run.returncode == 0 and "usage:" in run.stdout, run.stderr


def test_import_is_light_and_clis_run_without_runpy_warnings():
    # `import sisr` must not import its CLI modules: `python -m sisr.upscale` would warn
    # that the module was found in sys.modules before it ran.
    code = ("import sys, sisr; print(sorted(m for m in ('sisr.upscale', 'sisr.train', "
            "'sisr.evaluate', 'sisr.inference') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stderr
    for command in ("sisr.upscale", "sisr.train", "sisr.evaluate"):
        run = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", command,
                              "--help"], capture_output=True, text=True, cwd=ROOT)
        assert run.returncode == 0, run.stderr
        assert "found in sys.modules" not in run.stderr


def test_readme_layout_lists_every_module_and_package():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    table = readme[readme.index("## Layout"):]
    table = table[:table.index("\n## ")]
    listed = set(re.findall(r"`(sisr/[\w/.]+)`", table))
    package = os.path.join(ROOT, "sisr")
    entries = {f"sisr/{name}/" if os.path.isdir(os.path.join(package, name)) else f"sisr/{name}"
               for name in os.listdir(package)
               if not name.startswith(".") and name != "__pycache__"}
    assert entries - listed == set(), "README's layout table misses these"
    assert listed - entries == set(), "README's layout table lists what does not exist"
