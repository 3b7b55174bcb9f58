"""`--strategy multi-worker` with real worker processes on localhost (TF_CONFIG).

Each worker is a `python -m sisr.train` process, as the README's recipe starts them, with
one inter-/intra-op thread (this machine has 2 shared cores) and its own TMPDIR so that
the temporary directories of the non-chief workers can be checked.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import sisr
from sisr import train
from sisr.training import distributed
from sisr.training.callbacks import read_state
from test_train import assert_same_variables, final_backup, saved_variables

TINY = {
    "model": "wdsr_b", "num_filters": 4, "num_res_blocks": 1, "res_block_expansion": 2,
    "optimizer": "weight_norm_adam", "learning_rate": 1e-3, "loss": "l1",
    "epochs": 2, "steps_per_epoch": 3, "batch_size": 4, "lr_patch": 16, "valid_crop": 24,
    "scale": 2, "scales": [2, 3, 4],
}
TIMEOUT = 420  # seconds for a whole multi-worker run on a loaded 2-core machine


def write_profile(tmp_path, **changes):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({**TINY, **changes}))
    return str(path)


def test_local_tf_configs_describe_one_cluster_of_free_ports():
    configs = [json.loads(c) for c in distributed.local_tf_configs(3)]
    workers = configs[0]["cluster"]["worker"]
    assert len(workers) == len(set(workers)) == 3
    assert all(w.startswith("127.0.0.1:") and int(w.split(":")[1]) > 0 for w in workers)
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    assert all(c["cluster"] == configs[0]["cluster"] for c in configs)


class Cluster:
    """Worker processes of one multi-worker command; output goes to files (a full pipe
    would block a worker)."""

    def __init__(self, tmp_path, name, args, workers=2, command="sisr.train"):
        self.tmpdir = tmp_path / f"{name}-tmp"
        self.tmpdir.mkdir()
        self.logs = [tmp_path / f"{name}-worker{i}.log" for i in range(workers)]
        self.procs = []
        for i, tf_config in enumerate(distributed.local_tf_configs(workers)):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTEROP_THREADS="1",
                       TF_NUM_INTRAOP_THREADS="1", TMPDIR=str(self.tmpdir),
                       TF_CONFIG=tf_config)
            with open(self.logs[i], "w") as out:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", command, *args], cwd=str(tmp_path), env=env,
                    stdout=out, stderr=subprocess.STDOUT, text=True))

    def output(self, i):
        return self.logs[i].read_text()

    def wait(self, timeout=TIMEOUT):
        """Exit codes of all workers; kills them all if one is still running at the end."""
        deadline = time.time() + timeout
        try:
            return [proc.wait(timeout=max(deadline - time.time(), 1)) for proc in self.procs]
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("a worker did not finish in time:\n" + "\n".join(
                self.output(i)[-3000:] for i in range(len(self.procs))))

    def kill(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def read_csv(run_dir):
    with open(os.path.join(run_dir, "training.csv")) as f:
        return list(csv.DictReader(f))


def only_run_dir(outdir):
    dirs = sorted(os.listdir(outdir))
    assert len(dirs) == 1, dirs
    return os.path.join(outdir, dirs[0])


@pytest.mark.slow
def test_two_workers_train_exactly_like_one_process(tmp_path):
    profile = write_profile(tmp_path)
    common = ["--profile", profile, "--dataset", "demo", "--seed", "1", "--verbose", "0"]
    cluster = Cluster(tmp_path, "multi", [*common, "--strategy", "multi-worker",
                                          "--outdir", str(tmp_path / "multi")])
    single = subprocess.run(
        [sys.executable, "-m", "sisr.train", *common, "--outdir", str(tmp_path / "single")],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=TIMEOUT, check=False,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTEROP_THREADS="1",
                 TF_NUM_INTRAOP_THREADS="1"))
    codes = cluster.wait()
    assert codes == [0, 0], cluster.output(0)[-3000:] + cluster.output(1)[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]

    run_dir = only_run_dir(tmp_path / "multi")
    reference = only_run_dir(tmp_path / "single")
    # One complete run directory, written by the chief alone, no temporary files left.
    for name in ("config.json", "training.csv", "best.keras", "result.json"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert any(n.startswith("events.") for _, _, files in
               os.walk(os.path.join(run_dir, "logs")) for n in files)
    assert read_state(run_dir)["epoch"] == 2 and read_state(run_dir)["iterations"] == 6
    assert not [n for _, _, files in os.walk(run_dir) for n in files if n.startswith(".tmp-")]
    assert os.listdir(cluster.tmpdir) == []  # the other worker's copies were removed
    with open(os.path.join(run_dir, "config.json")) as f:
        assert json.load(f)["strategy"] == "multi-worker"
    # The chief reports; the other worker says where the results are.
    chief, worker = cluster.output(0), cluster.output(1)
    assert "validation PSNR" in chief and "validation PSNR" not in worker
    assert "val_psnr improved" in chief and "val_psnr improved" not in worker
    assert f"the chief writes the results to {run_dir}" in worker

    # The same global batches and seed: the same training, up to float rounding.
    rows, ref_rows = read_csv(run_dir), read_csv(reference)
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in ref_rows] == ["0", "1"]
    for row, ref in zip(rows, ref_rows):
        for key in ("loss", "psnr", "val_loss", "val_psnr"):
            np.testing.assert_allclose(float(row[key]), float(ref[key]), rtol=1e-5,
                                       err_msg=key)
    model = sisr.load_model(os.path.join(run_dir, "best.keras"))
    ref_model = sisr.load_model(os.path.join(reference, "best.keras"))
    for a, b in zip(model.get_weights(), ref_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_killed_worker_then_resume_keeps_every_epoch_once(tmp_path):
    """...and ends with the weights and every optimizer variable of an uninterrupted run
    with the same seed."""
    epochs, steps = 3, 20
    profile = write_profile(tmp_path, epochs=epochs, steps_per_epoch=steps)
    outdir = tmp_path / "runs"
    common = ["--profile", profile, "--dataset", "demo", "--seed", "2", "--verbose", "0",
              "--strategy", "multi-worker"]
    cluster = Cluster(tmp_path, "first", [*common, "--outdir", str(outdir)])
    deadline = time.time() + TIMEOUT
    state = None
    while time.time() < deadline and all(p.poll() is None for p in cluster.procs):
        dirs = os.listdir(outdir) if outdir.exists() else []
        state = read_state(os.path.join(outdir, dirs[0])) if dirs else None
        if state and state["epoch"] >= 1:
            break
        time.sleep(0.05)
    if not (state and state["epoch"] < epochs and cluster.procs[1].poll() is None):
        cluster.kill()
        pytest.fail("no chance to kill a worker mid-run:\n" + cluster.output(0)[-3000:])
    cluster.procs[1].send_signal(signal.SIGKILL)
    # The chief stops with a one-line error instead of waiting forever.
    code = cluster.procs[0].wait(timeout=TIMEOUT)
    assert code == 1, cluster.output(0)[-3000:]
    assert "rerun every worker with --resume" in cluster.output(0)
    run_dir = only_run_dir(outdir)
    killed_at = read_state(run_dir)
    assert killed_at["epoch"] < epochs

    resumed = Cluster(tmp_path, "resume", ["--resume", run_dir, "--verbose", "0"])
    codes = resumed.wait()
    assert codes == [0, 0], resumed.output(0)[-3000:] + resumed.output(1)[-3000:]
    assert f"resuming {run_dir} after epoch {killed_at['epoch']}" in resumed.output(0)
    final = read_state(run_dir)
    assert final["epoch"] == epochs and final["iterations"] == epochs * steps
    assert [int(r["epoch"]) for r in read_csv(run_dir)] == list(range(epochs))
    assert only_run_dir(outdir) == run_dir
    assert os.listdir(resumed.tmpdir) == []

    whole = Cluster(tmp_path, "whole", [*common, "--outdir", str(tmp_path / "whole")])
    assert whole.wait() == [0, 0], whole.output(0)[-3000:] + whole.output(1)[-3000:]
    expected = saved_variables(final_backup(only_run_dir(tmp_path / "whole")))
    assert int(expected["optimizer/vars/0"]) == epochs * steps  # Keras: iterations first
    assert_same_variables(saved_variables(final_backup(run_dir)), expected)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_bfloat16"])
def test_resume_under_mixed_precision(tmp_path, precision):
    profile = write_profile(tmp_path, epochs=1, steps_per_epoch=2)
    outdir = tmp_path / "runs"
    first = Cluster(tmp_path, "first", [
        "--profile", profile, "--dataset", "demo", "--seed", "1", "--verbose", "0",
        "--strategy", "multi-worker", "--precision", precision, "--outdir", str(outdir)])
    assert first.wait() == [0, 0], first.output(0)[-3000:]
    run_dir = only_run_dir(outdir)
    before = read_state(run_dir)
    resumed = Cluster(tmp_path, "resume", ["--resume", run_dir, "--epochs", "2",
                                            "--verbose", "0"])
    assert resumed.wait() == [0, 0], resumed.output(0)[-3000:] + resumed.output(1)[-3000:]
    # The optimizer state (with mixed_float16 its loss scale too) was restored: the run
    # would otherwise stop with "the optimizer state was not restored".
    assert f"step {before['iterations']})" in resumed.output(0)
    assert [int(r["epoch"]) for r in read_csv(run_dir)] == [0, 1]
    assert read_state(run_dir)["epoch"] == 2
    assert sisr.load_model(os.path.join(run_dir, "best.keras")).compute_dtype == "float32"


@pytest.mark.slow
def test_two_workers_fine_tune_srgan_like_one_process(tmp_path, vgg_weights):
    generator = str(tmp_path / "srresnet_x4.keras")
    sisr.save_model(sisr.model.srresnet(4, num_filters=8, num_res_blocks=1), generator)
    common = ["--generator", "sr-resnet", "--pretrained-model", generator, "--dataset", "demo",
              "--vgg-weights", vgg_weights, "--content-loss", "VGG22",
              "--discriminator-filters", "4", "--epochs", "1", "--steps-per-epoch", "2",
              "--batch-size", "2", "--seed", "1", "--verbose", "0"]
    cluster = Cluster(tmp_path, "gan", [*common, "--strategy", "multi-worker", "--outdir",
                                        str(tmp_path / "multi")], command="sisr.train_gan")
    single = subprocess.run(
        [sys.executable, "-m", "sisr.train_gan", *common, "--outdir", str(tmp_path / "single")],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=TIMEOUT, check=False,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTEROP_THREADS="1",
                 TF_NUM_INTRAOP_THREADS="1"))
    assert cluster.wait() == [0, 0], cluster.output(0)[-3000:] + cluster.output(1)[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "multi")
    for name in ("config.json", "training.csv", "last.keras", "result.json"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert read_state(run_dir)["backup"].endswith(".weights.h5")
    assert os.listdir(cluster.tmpdir) == []
    [row] = read_csv(run_dir)
    [ref] = read_csv(only_run_dir(tmp_path / "single"))
    for key in ("loss", "content_loss", "discriminator_loss", "val_psnr"):
        np.testing.assert_allclose(float(row[key]), float(ref[key]), rtol=1e-4, err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("recipe, more, rtol", [
    ("realesrgan-x4", ["--set", "lr_patch=8"], 1e-4),
    # bfloat16 rounds the halves of the batch apart from the whole: a looser tolerance.
    ("esrgan-x4", ["--precision", "mixed_bfloat16"], 2e-2),
])
def test_two_workers_fine_tune_the_gan_recipes_like_one_process(tmp_path, vgg_weights, recipe,
                                                                 more, rtol):
    """The U-Net discriminator's power iterations, the synchronised batch norm of the VGG
    one, the relativistic means over the global batch and the EMA: as in one process."""
    generator = str(tmp_path / "rrdbnet_x4.keras")
    sisr.save_model(sisr.model.get_spec("rrdbnet").builder(
        scale=4, num_feat=8, num_block=1, num_grow_ch=4), generator)
    common = ["--generator", recipe, "--pretrained-model", generator, "--dataset", "demo",
              "--vgg-weights", vgg_weights, "--discriminator-filters", "4", "--epochs", "1",
              "--steps-per-epoch", "2", "--batch-size", "2", "--seed", "1", "--verbose", "0",
              *more]
    cluster = Cluster(tmp_path, "gan", [*common, "--strategy", "multi-worker", "--outdir",
                                        str(tmp_path / "multi")], command="sisr.train_gan")
    single = subprocess.run(
        [sys.executable, "-m", "sisr.train_gan", *common, "--outdir", str(tmp_path / "single")],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=TIMEOUT, check=False,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTEROP_THREADS="1",
                 TF_NUM_INTRAOP_THREADS="1"))
    assert cluster.wait() == [0, 0], cluster.output(0)[-3000:] + cluster.output(1)[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "multi")
    assert os.path.isfile(os.path.join(run_dir, "last.keras"))
    assert os.listdir(cluster.tmpdir) == []
    [row] = read_csv(run_dir)
    [ref] = read_csv(only_run_dir(tmp_path / "single"))
    for key in ("loss", "pixel_loss", "content_loss", "adversarial_loss",
                "discriminator_loss", "val_psnr"):
        np.testing.assert_allclose(float(row[key]), float(ref[key]), rtol=rtol, err_msg=key)


def test_multi_worker_mixed_float16_is_refused_before_any_work(tmp_path, capsys):
    # Its dynamic loss scaling hangs two local workers (their first epoch never ends):
    # refused with a message instead, before a cluster is joined or a file written.
    code = train.main(["--profile", write_profile(tmp_path), "--dataset", "demo",
                       "--strategy", "multi-worker", "--precision", "mixed_float16",
                       "--outdir", str(tmp_path / "runs")])
    assert code == 2
    assert "mixed_float16 with --strategy multi-worker is refused" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_multi_worker_without_a_cluster_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    code = train.main(["--profile", write_profile(tmp_path), "--dataset", "demo",
                       "--strategy", "multi-worker", "--outdir", str(tmp_path / "runs")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no cluster; set TF_CONFIG" in err and err.count("TF_CONFIG") == 1, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("tf_config,why", [
    ("[]", "expected"),
    ("{}", "expected"),
    ('{"clustr": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}',
     "expected"),
    ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}}', '"task" must name'),
    ('{"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}}',
     "must be a list"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
     "task index 1"),
    ("not json", "not JSON"),
    ("", "not JSON"),
])
def test_a_tf_config_that_is_no_cluster_is_refused(tmp_path, monkeypatch, capsys, tf_config,
                                                   why):
    # TensorFlow read these as a cluster of one: each host trained alone, exit 0.
    monkeypatch.setenv("TF_CONFIG", tf_config)
    code = train.main(["--profile", write_profile(tmp_path), "--dataset", "demo",
                       "--strategy", "multi-worker", "--outdir", str(tmp_path / "runs")])
    assert code == 2
    err = capsys.readouterr().err
    assert "TF_CONFIG is not a cluster: " in err and why in err, err
    assert not (tmp_path / "runs").exists()


class _Resolver:
    """The part of a cluster resolver that `wait_for_peers` reads."""

    def __init__(self, workers, index=0):
        self.spec, self.task_type, self.task_id = {"worker": workers}, "worker", index

    def cluster_spec(self):
        return self

    def as_dict(self):
        return self.spec


def _free_addresses(n):
    return json.loads(distributed.local_tf_configs(n)[0])["cluster"]["worker"]


def test_waiting_for_missing_workers_says_whom_and_ends(caplog):
    own, silent = _free_addresses(2)
    resolver = _Resolver([own, silent, "no-such-host.invalid:2222"])
    start = time.monotonic()
    with pytest.raises(distributed.ClusterWaitError) as info:
        distributed.wait_for_peers(resolver, timeout=1.5, every=0.5)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "no answer after 1.5 s (--cluster-timeout) from " in message
    assert f"worker 1 ({silent}: not listening)" in message
    assert "worker 2 (no-such-host.invalid:2222: cannot resolve no-such-host.invalid)" \
        in message
    assert "waiting for worker 1" in caplog.text  # said while waiting


def test_a_waiting_worker_is_seen_by_the_others():
    a, b = _free_addresses(2)
    port = int(b.rpartition(":")[2])
    # Worker 1 waits in another process (signal handlers need a main thread), then holds
    # its port as TensorFlow's server would. Each sees the other while both wait.
    code = ("import socket, time; from sisr.training import distributed as d; "
            f"import test_multiworker as t; d.wait_for_peers(t._Resolver({[a, b]!r}, 1), "
            "timeout=60, every=1); s = socket.socket(); "
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
            f"s.bind(('', {port})); s.listen(); print('all up', flush=True); time.sleep(60)")
    other = subprocess.Popen([sys.executable, "-c", code], cwd=os.path.dirname(__file__),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    try:
        distributed.wait_for_peers(_Resolver([a, b], 0), timeout=60, every=1)
        lines = []
        while not lines or lines[-1] not in ("", "all up\n"):  # up, or ended
            lines.append(other.stdout.readline())
    finally:
        other.kill()
        other.wait()
    assert lines[-1] == "all up\n", "".join(lines)


@pytest.mark.slow  # two workers started and signalled: ~9 s each
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_a_worker_waiting_for_a_peer(tmp_path, signum):
    # A worker waiting for a peer that never starts ignored SIGINT and SIGTERM.
    workers = Cluster(tmp_path, "alone", ["--profile", write_profile(tmp_path), "--dataset",
                                          "demo", "--strategy", "multi-worker", "--outdir",
                                          str(tmp_path / "runs"), "--cluster-timeout", "900"])
    lonely, missing = workers.procs
    missing.kill()
    missing.wait()
    deadline = time.time() + 120
    while "waiting for worker 1" not in workers.output(0) and time.time() < deadline:
        time.sleep(0.5)
    assert "waiting for worker 1" in workers.output(0), workers.output(0)
    assert "(5 s of 900)" in workers.output(0)  # --cluster-timeout
    lonely.send_signal(signum)
    code = lonely.wait(timeout=20)
    assert code != 0
    out = workers.output(0)
    name = signal.Signals(signum).name
    assert f"error: multi-worker: stopped by {name} while waiting for worker 1" in out, out
    assert "Traceback" not in out
    assert not (tmp_path / "runs").exists()


def test_a_cluster_needs_the_multi_worker_strategy(tmp_path, monkeypatch, capsys):
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 0}}))
    code = train.main(["--profile", write_profile(tmp_path), "--dataset", "demo",
                       "--strategy", "mirrored", "--outdir", str(tmp_path / "runs")])
    assert code == 2
    assert "TF_CONFIG describes a cluster of 2 workers; use --strategy multi-worker" \
        in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_slurm_job_step_gives_the_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", "")  # no nvidia-smi: a CPU-only node
    for name, value in (("SLURM_PROCID", "1"), ("SLURM_STEP_NUM_TASKS", "2"),
                        ("SLURM_STEP_NODELIST", "node[07-08]"),
                        ("SLURM_STEP_TASKS_PER_NODE", "1(x2)")):
        monkeypatch.setenv(name, value)
    resolver = distributed.cluster_resolver()
    assert resolver.cluster_spec().as_dict() == {"worker": ["node07:8888", "node08:8888"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)


def test_global_batch_must_split_over_the_replicas(tmp_path, capsys):
    # conftest gives this process two logical CPUs: `mirrored` has 2 replicas.
    code = train.main(["--profile", write_profile(tmp_path, batch_size=3), "--dataset",
                       "demo", "--strategy", "mirrored", "--outdir", str(tmp_path / "runs")])
    assert code == 2
    assert "--batch-size 3 (the global batch) does not split evenly over the 2 replicas" \
        in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_run_dir_names_do_not_collide(tmp_path):
    first = distributed.new_run_dir(str(tmp_path), "tiny")
    second = distributed.new_run_dir(str(tmp_path), "tiny")
    assert os.path.isdir(first) and os.path.isdir(second) and first != second
    name = os.path.basename(first)
    assert len(name) == len("YYYYmmdd-HHMMSS-tiny") and name[8] == "-"


@pytest.mark.slow
def test_realesrnet_on_realesrgan_degradations_two_workers_resume_like_one_process(tmp_path):
    """Two workers of a `realesrnet-x4` run on the fly `realesrgan` degradations, resumed
    after its first epoch, train as one uninterrupted process with the same seed: so the
    workers degrade different patches (each its own part of the global batch, with that
    patch's draws; the same LR on both would change the gradients), deterministically."""
    tiny = ["--set", "num_block=1", "--set", "num_feat=8", "--set", "num_grow_ch=4",
            "--set", "lr_patch=16", "--set", "valid_crop=16"]
    common = ["--profile", "realesrnet-x4", "--dataset", "demo", "--degradation",
              "realesrgan", "--steps-per-epoch", "2", "--batch-size", "4", "--seed", "3",
              "--verbose", "0", *tiny]
    cluster = Cluster(tmp_path, "multi", [*common, "--epochs", "1", "--strategy",
                                          "multi-worker", "--outdir", str(tmp_path / "multi")])
    single = subprocess.run(
        [sys.executable, "-m", "sisr.train", *common, "--epochs", "2", "--outdir",
         str(tmp_path / "single")], cwd=str(tmp_path), capture_output=True, text=True,
        timeout=TIMEOUT, check=False, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                                               TF_NUM_INTEROP_THREADS="1",
                                               TF_NUM_INTRAOP_THREADS="1"))
    assert cluster.wait() == [0, 0], cluster.output(0)[-3000:] + cluster.output(1)[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "multi")
    resumed = Cluster(tmp_path, "resume", ["--resume", run_dir, "--epochs", "2",
                                            "--verbose", "0"])
    assert resumed.wait() == [0, 0], resumed.output(0)[-3000:] + resumed.output(1)[-3000:]
    assert f"resuming {run_dir} after epoch 1" in resumed.output(0)
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert config["degradation"] == "realesrgan" and config["strategy"] == "multi-worker"

    rows, ref_rows = read_csv(run_dir), read_csv(only_run_dir(tmp_path / "single"))
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in ref_rows] == ["0", "1"]
    for row, ref in zip(rows, ref_rows):
        for key in ("loss", "val_loss"):
            np.testing.assert_allclose(float(row[key]), float(ref[key]), rtol=1e-5,
                                       err_msg=key)
    # Every weight and optimizer variable, up to the all-reduce's float rounding (Adam's
    # second moments, ~1 here, by up to 3e-5).
    got = saved_variables(final_backup(run_dir))
    expected = saved_variables(final_backup(only_run_dir(tmp_path / "single")))
    assert sorted(got) == sorted(expected) and int(got["optimizer/vars/0"]) == 4
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
