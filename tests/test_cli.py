"""What every command shares (sisr.cli): no TensorFlow for --help, TensorFlow's start-up
lines filtered, error lines of a readable length."""

import os
import subprocess
import sys

import pytest

from sisr import _backend, cli, cli_logs
from sisr.errors import SisrError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ("sisr.train", "sisr.train_gan", "sisr.upscale", "sisr.evaluate", "sisr.convert",
            "sisr.port", "sisr.pretrained", "sisr.export", "sisr.study")


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra)
    return env


def _imported(importtime_log):
    """The top-level module names that `python -X importtime` reports."""
    names = set()
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("argv", [["--help"], ["--no-such-flag"]], ids=["help", "bad-flag"])
def test_help_and_argument_errors_do_not_load_tensorflow(argv):
    # As users run them: `python -m sisr.COMMAND` imports the package first.
    for command in COMMANDS:
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", command, *argv],
                                capture_output=True, text=True, env=_env(), cwd=ROOT,
                                timeout=120)
        if argv == ["--help"]:
            assert result.returncode == 0, (command, result.stderr[-2000:])
            assert result.stdout.startswith(f"usage: python -m {command}"), command
        else:
            assert result.returncode == 2, (command, result.stderr[-2000:])
            assert f"python -m {command}: error: " in result.stderr, command
        loaded = _imported(result.stderr)
        assert "sisr" in loaded, command  # the log is read right
        assert not loaded & {"tensorflow", "keras"}, (command, loaded & {"tensorflow", "keras"})


def test_a_command_is_recognised_while_python_locates_it():
    assert _backend.starting_command(["-m"], ["python", "-X", "importtime", "-m", "sisr.train"])
    assert _backend.starting_command(["-m"], ["python", "-msisr.port", "x.pth"])
    assert not _backend.starting_command(["-m"], ["python", "-m", "mytool.sub"])
    assert not _backend.starting_command(["-c"], ["python", "-c", "import sisr"])
    assert not _backend.starting_command(["/usr/bin/ipython"], ["python", "/usr/bin/ipython"])
    assert not _backend.starting_command([], [])


@pytest.mark.slow  # a TensorFlow start-up
def test_import_sisr_still_registers_its_classes_for_keras():
    code = ("import sisr, keras\n"
            "from keras.saving import get_registered_object\n"
            "assert get_registered_object('sisr>SRModel') is not None\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_env(), cwd=ROOT, timeout=300)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr


def test_load_model_registers_sisr_classes_when_sisr_init_did_not_run(tmp_path):
    # A `sisr` folder in the working directory made `sisr` a namespace package: its
    # __init__ (the registration) did not run, and safe mode refused 'SRModel'.
    from sisr.model import edsr
    from sisr.saving import save_model

    path = str(tmp_path / "tiny.keras")
    save_model(edsr(scale=2, num_filters=4, num_res_blocks=1), path)
    code = (
        "import importlib.machinery, importlib.util, sys\n"
        f"spec = importlib.machinery.ModuleSpec('sisr', None, is_package=True)\n"
        f"spec.submodule_search_locations = [{os.path.join(ROOT, 'sisr')!r}]\n"
        "sys.modules['sisr'] = importlib.util.module_from_spec(spec)\n"
        "from sisr.saving import load_model\n"
        "assert not hasattr(sys.modules['sisr'], '__version__')  # __init__ did not run\n"
        f"print(load_model({path!r}).builder)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_env(), cwd=str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "edsr"


def test_error_lines_are_cut_unless_verbose(capsys):
    message = "model config " + "x" * 5000 + " use --force"

    def body(args):
        raise SisrError(message)

    assert cli.run(body, None) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and len(err) < cli.ERROR_WIDTH + 100, err
    assert err.startswith("error: model config xxx") and "--verbose shows them" in err
    assert err.endswith("x use --force\n")  # the end often says what to do
    assert cli.run(body, None, verbose=True) == 1
    assert capsys.readouterr().err == f"error: {message}\n"


def test_logged_errors_are_cut_unless_verbose():
    import logging

    record = logging.LogRecord("sisr", logging.ERROR, __file__, 1, "a.png: %s", ("y" * 900,),
                               None)
    short = cli._Formatter("%(message)s").format(record)
    assert short.startswith("error: a.png: yyy") and len(short) < cli.ERROR_WIDTH + 100
    whole = cli._Formatter("%(message)s", verbose=True).format(record)
    assert whole == "error: a.png: " + "y" * 900


def test_verbose_flag_of_every_command():
    from sisr import convert, export, evaluate, train, train_gan, upscale
    from sisr.port import cli as port_cli
    from sisr.pretrained import cli as pretrained_cli

    assert cli.is_verbose(upscale.make_parser().parse_args(
        ["-i", "a", "-o", "b", "--model", "m", "--verbose"]))
    assert not cli.is_verbose(evaluate.make_parser().parse_args(["--model", "m", "--dataset",
                                                                 "demo"]))
    assert cli.is_verbose(export.make_parser().parse_args(
        ["m", "--format", "onnx", "-o", "x", "--verbose"]))
    assert cli.is_verbose(port_cli.make_parser().parse_args(["w", "-o", "x", "--verbose"]))
    for parser, argv in ((convert.make_parser(), ["verify", "-o", "x"]),
                         (pretrained_cli.make_parser(), ["list"])):
        assert not cli.is_verbose(parser.parse_args(argv))
        assert cli.is_verbose(parser.parse_args(["--verbose", *argv]))
        assert cli.is_verbose(parser.parse_args([*argv, "--verbose"]))
    # Training's --verbose is Keras' verbosity; 2 (or the flag alone) is verbose.
    for module in (train, train_gan):
        parser = module.make_parser()
        assert parser.parse_args([]).verbose == 1
        assert not cli.is_verbose(parser.parse_args(["--verbose", "0"]))
        assert cli.is_verbose(parser.parse_args(["--verbose"]))
        assert cli.is_verbose(parser.parse_args(["--verbose", "2"]))


def test_notices_are_dropped_and_everything_else_kept():
    data = (b"WARNING: All log messages before absl::InitializeLog() is called are written "
            b"to STDERR\n"
            b"I0000 00:00:1796602485.447684    6768 port.cc:153] oneDNN custom operations are "
            b"on. You may see slightly different numerical results.\n"
            b"E0000 00:00:1796602485.5    6768 something.cc:12] a real error\n"
            b"F0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on. fatal?\n")
    assert cli_logs.drop_notices(data) == (
        b"E0000 00:00:1796602485.5    6768 something.cc:12] a real error\n"
        b"F0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on. fatal?\n")


FILTER_CHILD = """
import importlib.util, os, sys
# Not through the package: `import sisr` loads TensorFlow, whose notices are not filtered.
spec = importlib.util.spec_from_file_location("cli_logs", sys.argv[2])
cli_logs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cli_logs)
with cli_logs.filtered_stderr():
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are "
                b"written to STDERR\\n")
    os.write(2, b"I0000 00:00:1.5    1 port.cc:153] oneDNN custom operations are on. x\\n")
    os.write(2, b"kept before the crash\\n")
    if sys.argv[1] == "crash":
        os.abort()
    print("python's stderr kept", file=sys.stderr)
print("after the block", file=sys.stderr)
"""


@pytest.mark.parametrize("how", ["normal", "crash"])
def test_filtered_stderr_keeps_what_a_crash_wrote(how):
    result = subprocess.run([sys.executable, "-c", FILTER_CHILD, how, cli_logs.__file__],
                            capture_output=True,
                            text=True, env=_env(), cwd=ROOT, timeout=60)
    assert "kept before the crash" in result.stderr
    assert "InitializeLog" not in result.stderr and "oneDNN" not in result.stderr
    if how == "normal":
        assert result.returncode == 0
        assert result.stderr.endswith("python's stderr kept\nafter the block\n")
    else:
        assert result.returncode != 0


@pytest.mark.slow  # two TensorFlow start-ups
def test_a_command_hides_tensorflows_start_up_notices_unless_asked(tmp_path):
    # The first command that loads TensorFlow with each setting (a cheap one: verify of an
    # empty conversion fails after loading it).
    argv = [sys.executable, "-m", "sisr.convert", "verify", "-o", str(tmp_path)]
    quiet = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300,
                           env=_env(SISR_TF_LOGS="0"))
    shown = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300,
                           env=_env(SISR_TF_LOGS="1"))
    assert quiet.returncode == shown.returncode
    assert quiet.stdout == shown.stdout
    for line in quiet.stderr.splitlines():
        assert "InitializeLog" not in line and "cpu_feature_guard" not in line, quiet.stderr
        assert "oneDNN custom operations" not in line, quiet.stderr
    if "oneDNN custom operations" not in shown.stderr:
        pytest.skip("this TensorFlow build prints no oneDNN notice")
    assert "InitializeLog" in shown.stderr


def _help_of(parser, flag):
    action = next(a for a in parser._actions if flag in a.option_strings)
    return action.help


def test_help_names_pretrained_names_and_training_defaults():
    from sisr import evaluate, train, train_gan, upscale

    for parser, flag in ((upscale.make_parser(), "--model"),
                         (evaluate.make_parser(), "--model"),
                         (train.make_parser(), "--pretrained-model"),
                         (train_gan.make_parser(), "--pretrained-model")):
        assert "pretrained name" in _help_of(parser, flag), flag
    parser = train.make_parser()
    for flag in ("--scale", "--epochs", "--seed", "--precision"):
        assert "default" in _help_of(parser, flag), flag
