"""sisr's trainer against the official trainers over thousands of steps (issue 24, part 1).

The same HR photographs, laid out as a DIV2K-shaped folder, train the EDSR baseline x2
and WDSR-B x2 twice per seed: once by EDSR-PyTorch's own `main.py` (with the official
`wdsr_b.py` in its `src/model`, as the WDSR README instructs) and once by
`python -m sisr.train` with the matching profile and the same batch size, patch size,
learning rate and schedule. The two trainers of a pair never run at the same time: each
runs a chunk of `--chunk` steps (one EDSR-PyTorch "epoch" of `--test_every` batches, one
sisr epoch of `--steps-per-epoch` steps) while the other is stopped (SIGSTOP), then they
swap, so both see the same machine load. Each chunk's wall-clock and CPU seconds and the
load average are recorded.

Validation uses the same held-out images and sisr's metric for both: RGB PSNR with the
DIV2K shave of EDSR-PyTorch (scale + 6 border pixels), of the output clipped and rounded
to 8 bits. sisr's run logs it after every epoch (`val_psnr` in training.csv, full images
with --benchmark); the official run's per-chunk checkpoints (`--save_models`) are run by
the official model afterwards and scored by `sisr.metrics.psnr` (EDSR-PyTorch's own PSNR
of the same checkpoints is kept beside it as a cross-check).

Steps (each one skips what is already done, so a study can be spread over sittings):

    PYTHONPATH=. python benchmarks/train_vs_official.py prepare
    PYTHONPATH=. python benchmarks/train_vs_official.py run --edsr-src SRC --torch-python PY
    PYTHONPATH=. python benchmarks/train_vs_official.py score --edsr-src SRC --torch-python PY
    PYTHONPATH=. python benchmarks/train_vs_official.py report

SRC is EDSR-PyTorch's `src` folder with `model/wdsr_b.py` from JiahuiYu/wdsr_ntire2018;
PY a Python with torch, numpy, imageio, tqdm, matplotlib and scikit-image (what
EDSR-PyTorch imports). The official code is not modified: the compatibility shims it needs
on a CPU with today's torch are applied at run time by this script's `_official` mode
(see `apply_official_shims`), and its processes wait passively for their OpenMP threads
(`official_env`). A pair interrupted mid-run starts again from its first chunk (the pairs
already finished are kept). Data and runs go to `runs/train_vs_official/` (ignored by
git), the report (`report.md`, `summary.json`, `psnr.png`) to
`benchmarks/results/train_vs_official/`. Defaults: batch 4, LR patch 16, 8 chunks of 250
steps, the learning rate halved after chunk 4, seeds 1 and 2, EDSR then WDSR-B.
"""

import argparse
import glob
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_WORK = os.path.join(ROOT, "runs", "train_vs_official")
DEFAULT_REPORT = os.path.join(HERE, "results", "train_vs_official")

SCALE = 2
SIDES = ("sisr", "official")
# DIV2K's RGB mean, which the official wdsr_b.py reads from options EDSR-PyTorch lacks.
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)

# network -> sisr profile and EDSR-PyTorch model options (the same architecture).
NETWORKS = {
    "edsr": {"profile": "edsr-16", "learning_rate": 1e-4,
             "official": ["--model", "EDSR", "--n_resblocks", "16", "--n_feats", "64",
                          "--res_scale", "1"]},
    "wdsr-b": {"profile": "wdsr-b-16", "learning_rate": 1e-3,
               "official": ["--model", "WDSR_B", "--n_resblocks", "16", "--n_feats", "32",
                            "--res_scale", "1"]},
}


# -- data -------------------------------------------------------------------------------

def photo_sources():
    """(name, path) of the HR photographs: sisr's demo set, then package photographs.

    Training: the 8 demo training images, matplotlib's `grace_hopper.jpg` (US Navy
    photograph, public domain) and scikit-image's `ihc.png` (no known copyright
    restrictions) when scikit-image is installed; validation: the 3 demo validation
    images. Returns `(train, valid)` lists.
    """
    demo = os.path.join(ROOT, "sisr", "data", "demo")
    train = [(os.path.basename(p)[6:-4], p)
             for p in sorted(glob.glob(os.path.join(demo, "train_*.png")))]
    valid = [(os.path.basename(p)[6:-4], p)
             for p in sorted(glob.glob(os.path.join(demo, "valid_*.png")))]
    import matplotlib

    hopper = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data",
                          "grace_hopper.jpg")
    if os.path.isfile(hopper):
        train.append(("grace_hopper", hopper))
    try:
        import skimage
    except ImportError:
        skimage = None
    if skimage is not None:
        ihc = os.path.join(os.path.dirname(skimage.__file__), "data", "ihc.png")
        if os.path.isfile(ihc):
            train.append(("ihc", ihc))
    return train, valid


def centre_crop(image, side):
    """The centre `side` x `side` crop of an image (the whole extent where it is smaller)."""
    height, width = image.shape[:2]
    top, left = max((height - side) // 2, 0), max((width - side) // 2, 0)
    return image[top:top + side, left:left + side]


def crop_to_multiple(image, multiple):
    """Top-left crop of an HxW(xC) array to sides divisible by `multiple`."""
    height, width = image.shape[:2]
    return image[:height - height % multiple, :width - width % multiple]


def data_range(n_train, n_valid):
    """EDSR-PyTorch's `--data_range` for train ids 1..n_train and the next n_valid."""
    return f"1-{n_train}/{n_train + 1}-{n_train + n_valid}"


def layout(n_train, n_valid, scale=SCALE):
    """Relative paths of every HR and LR file of the two DIV2K-shaped trees.

    `official/DIV2K/` holds all images in DIV2K_train_* (EDSR-PyTorch's DIV2K class
    takes train and validation ids from there by `--data_range`); `sisr/` holds the
    training ids 1..n in DIV2K_train_* and the validation images as DIV2K_valid_* ids
    801, 802, ... (the same files). Returns a list of dicts with `subset`, `index` (0-based
    position in its subset), `official_hr`, `official_lr`, `sisr_hr`, `sisr_lr`.
    """
    rows = []
    for subset, count in (("train", n_train), ("valid", n_valid)):
        for index in range(count):
            official_id = index + 1 if subset == "train" else n_train + index + 1
            sisr_id = index + 1 if subset == "train" else 801 + index
            rows.append({
                "subset": subset, "index": index,
                "official_hr": f"official/DIV2K/DIV2K_train_HR/{official_id:04d}.png",
                "official_lr": (f"official/DIV2K/DIV2K_train_LR_bicubic/X{scale}/"
                                f"{official_id:04d}x{scale}.png"),
                "sisr_hr": f"sisr/DIV2K_{subset}_HR/{sisr_id:04d}.png",
                "sisr_lr": f"sisr/DIV2K_{subset}_LR_bicubic/X{scale}/{sisr_id:04d}x{scale}.png",
            })
    return rows


def prepare(data_dir, scale=SCALE, valid_side=192):
    """Writes the two trees (LR by sisr's MATLAB-exact imresize) and `images.json`.

    Validation images are centre crops of `valid_side` HR pixels: full-image validation
    after every chunk would otherwise cost more than the chunk's training on this CPU.
    """
    manifest = os.path.join(data_dir, "images.json")
    if os.path.isfile(manifest):
        print(f"{data_dir}: data already prepared", file=sys.stderr)
        return json.load(open(manifest))
    from sisr.imageio import read_image, to_rgb, write_image
    from sisr.imresize import imresize

    train, valid = photo_sources()
    rows = layout(len(train), len(valid), scale)
    tmp = data_dir + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    for row, (name, path) in zip(rows, train + valid):
        hr = to_rgb(read_image(path).array)[..., :3]
        if row["subset"] == "valid":
            hr = centre_crop(hr, valid_side)
        hr = crop_to_multiple(hr, scale)
        lr = imresize(hr, 1 / scale)
        row.update(name=name, source=os.path.relpath(path, ROOT) if path.startswith(ROOT)
                   else path, hr_shape=list(hr.shape))
        for key, image in (("hr", hr), ("lr", lr)):
            for side in SIDES:
                target = os.path.join(tmp, row[f"{side}_{key}"])
                os.makedirs(os.path.dirname(target), exist_ok=True)
                write_image(target, image)
    info = {"scale": scale, "n_train": len(train), "n_valid": len(valid), "images": rows}
    with open(os.path.join(tmp, "images.json"), "w") as f:
        json.dump(info, f, indent=1)
    shutil.rmtree(data_dir, ignore_errors=True)
    os.replace(tmp, data_dir)
    print(f"{data_dir}: {len(train)} training and {len(valid)} validation images",
          file=sys.stderr)
    return info


# -- commands of the two trainers -------------------------------------------------------

def recipe(args):
    """The shared recipe of a study as a plain dict (saved with the runs)."""
    return {"batch_size": args.batch_size, "lr_patch": args.lr_patch, "chunk": args.chunk,
            "chunks": args.chunks, "decay_chunks": args.decay_chunks, "gamma": 0.5,
            "scale": SCALE}


def sisr_command(net, seed, rec, data_dir, out_dir, python=sys.executable):
    """argv of `python -m sisr.train` for one run (the profile, the shared recipe)."""
    spec = NETWORKS[net]
    decay = [rec["decay_chunks"] * rec["chunk"]] if rec["decay_chunks"] else []
    return [python, "-m", "sisr.train", "--profile", spec["profile"], "--scale",
            str(rec["scale"]), "--dataset", os.path.join(data_dir, "sisr"),
            "--outdir", out_dir, "--epochs", str(rec["chunks"]),
            "--steps-per-epoch", str(rec["chunk"]), "--batch-size", str(rec["batch_size"]),
            "--seed", str(seed), "--benchmark", "--learning-rate", str(spec["learning_rate"]),
            "--set", f"lr_patch={rec['lr_patch']}", "--set", f"lr_decay_steps={decay}",
            "--set", f"lr_decay_factor={rec['gamma']}", "--verbose", "2"]


def official_options(net, seed, rec, n_train, n_valid, data_dir, save_dir):
    """EDSR-PyTorch `main.py` options for one run.

    One official "epoch" is `--test_every` batches, so `--test_every` = the chunk and the
    step decay `--decay` is counted in chunks. `main.py` trains `--epochs` - 1 epochs (its
    loop stops when the next epoch number reaches `--epochs`), hence chunks + 1.
    """
    spec = NETWORKS[net]
    decay = rec["decay_chunks"] or 10 ** 6
    return ["--dir_data", os.path.join(data_dir, "official"), "--data_train", "DIV2K",
            "--data_test", "DIV2K", "--data_range", data_range(n_train, n_valid),
            "--ext", "sep", "--scale", str(rec["scale"]),
            "--patch_size", str(rec["lr_patch"] * rec["scale"]),
            "--batch_size", str(rec["batch_size"]), "--test_every", str(rec["chunk"]),
            "--epochs", str(rec["chunks"] + 1), "--decay", str(decay),
            "--gamma", str(rec["gamma"]), "--lr", str(spec["learning_rate"]),
            *spec["official"], "--cpu", "--n_threads", "0", "--seed", str(seed),
            "--save", save_dir, "--save_models", "--print_every", "50"]


# -- chunk bookkeeping ------------------------------------------------------------------

def read_chunks(path):
    """The chunk records of a run (a JSON-lines file), [] if none."""
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def append_chunk(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def run_status(records, chunks):
    """"done" when both sides have `chunks` chunks, "new" with none, else "partial"."""
    if not records:
        return "new"
    counts = {side: sum(1 for r in records if r["side"] == side) for side in SIDES}
    return "done" if all(c >= chunks for c in counts.values()) else "partial"


def cumulative(records, side):
    """[(step, wall_s, cpu_s)] after each chunk of one side, summing its chunks."""
    out, wall, cpu = [], 0.0, 0.0
    for r in sorted((r for r in records if r["side"] == side), key=lambda r: r["chunk"]):
        wall += r["wall_s"]
        cpu += r["cpu_s"]
        out.append((r["step"], wall, cpu))
    return out


def official_chunks_done(log_text):
    """Completed official chunks: one "Total: ..." line closes each test() after a chunk."""
    return sum(1 for line in log_text.splitlines() if line.startswith("Total:"))


def sisr_chunks_done(csv_text):
    """Completed sisr epochs: the data rows of training.csv."""
    lines = [line for line in csv_text.splitlines() if line.strip()]
    return max(len(lines) - 1, 0)


# -- report maths -----------------------------------------------------------------------

def time_to_reach(points, target):
    """Wall seconds at the first validation whose PSNR is >= target, else None.

    `points`: [(step, wall_s, psnr)] in step order.
    """
    for _, wall, psnr in points:
        if psnr >= target:
            return wall
    return None


def spread(values):
    """(mean, sample standard deviation or 0, max - min) of seed results."""
    values = list(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std, max(values) - min(values)


def final_difference(sisr_finals, official_finals):
    """sisr minus official mean final PSNR, and the larger of the two seed ranges."""
    mean_s, _, range_s = spread(sisr_finals)
    mean_o, _, range_o = spread(official_finals)
    return mean_s - mean_o, max(range_s, range_o)


# -- process control --------------------------------------------------------------------

def _proc_cpu_seconds(pid):
    """utime + stime of a process and its waited-for children, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


def _loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class Side:
    """One trainer process, advanced a chunk at a time and stopped (SIGSTOP) in between."""

    def __init__(self, name, argv, cwd, log_path, env, done_fn):
        self.name, self.argv, self.cwd, self.env = name, argv, cwd, env
        self.log_path, self.done_fn = log_path, done_fn
        self.proc = None
        self.cpu = 0.0
        self.exit_cpu = None  # CPU seconds of the process once it has exited

    def _reap(self):
        """True once the process has exited (reaped here, keeping its CPU time)."""
        if self.exit_cpu is not None:
            return True
        pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.exit_cpu = usage.ru_utime + usage.ru_stime
        return True

    def _signal(self, sig):
        if self.proc is not None and not self._reap():
            os.killpg(self.proc.pid, sig)

    def advance(self, target_chunks, poll=0.2):
        """Runs until `target_chunks` chunks are complete; returns (wall_s, cpu_s)."""
        start = time.monotonic()
        if self.proc is None:
            log = open(self.log_path, "a")
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        else:
            self._signal(signal.SIGCONT)
        while self.done_fn() < target_chunks:
            if self._reap() and self.done_fn() < target_chunks:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before chunk "
                                   f"{target_chunks}; see {self.log_path}")
            time.sleep(poll)
        self._signal(signal.SIGSTOP)
        wall = time.monotonic() - start
        cpu = self.exit_cpu if self._reap() else _proc_cpu_seconds(self.proc.pid)
        used, self.cpu = (cpu - self.cpu, cpu) if cpu is not None else (float("nan"), self.cpu)
        return wall, used

    def finish(self):
        if self.proc is None or self._reap():
            return
        self._signal(signal.SIGCONT)
        _, status, _ = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.exit_cpu = 0.0

    def kill(self):
        if self.proc is not None and not self._reap():
            self._signal(signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.finish()


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _sisr_run_dir(out_dir):
    dirs = sorted(d for d in glob.glob(os.path.join(out_dir, "*")) if os.path.isdir(d))
    return dirs[-1] if dirs else None


def official_env():
    """The environment of the official processes: OpenMP threads wait passively.

    PyTorch's OpenMP threads spin at every barrier by default; on a shared, oversubscribed
    machine a spinning thread waits for a peer that is not running, and an EDSR step took
    2.9 CPU seconds instead of 0.06 (batch 4, LR 16x16, 2 threads, load 15). TensorFlow's
    thread pool does not spin like this.
    """
    return dict(os.environ, OMP_WAIT_POLICY="PASSIVE")


def run_pair(work, net, seed, rec, info, edsr_src, torch_python):
    run_dir = os.path.join(work, "runs", f"{net}-seed{seed}")
    chunks_path = os.path.join(run_dir, "chunks.jsonl")
    status = run_status(read_chunks(chunks_path), rec["chunks"])
    if status == "done":
        print(f"{net} seed {seed}: done", file=sys.stderr)
        return
    if status == "partial":
        print(f"{net} seed {seed}: interrupted earlier, starting it again", file=sys.stderr)
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "recipe.json"), "w") as f:
        json.dump({"net": net, "seed": seed, **rec}, f, indent=1)
    data_dir = os.path.join(work, "data")
    sisr_out = os.path.join(run_dir, "sisr")
    official_save = os.path.join(run_dir, "official")
    env = dict(os.environ, PYTHONPATH=ROOT)
    sides = {
        "sisr": Side("sisr", sisr_command(net, seed, rec, data_dir, sisr_out), ROOT,
                     os.path.join(run_dir, "sisr.log"), env,
                     lambda: sisr_chunks_done(_read(os.path.join(
                         _sisr_run_dir(sisr_out) or "/nonexistent", "training.csv")))),
        "official": Side(
            "official",
            [torch_python, os.path.abspath(__file__), "_official", "--edsr-src", edsr_src,
             "--", *official_options(net, seed, rec, info["n_train"], info["n_valid"],
                                     data_dir, official_save)],
            edsr_src, os.path.join(run_dir, "official.log"), official_env(),
            lambda: official_chunks_done(_read(os.path.join(official_save, "log.txt")))),
    }
    try:
        for chunk in range(1, rec["chunks"] + 1):
            # Alternate which side goes first so neither always follows the other.
            order = SIDES if chunk % 2 else SIDES[::-1]
            for side in order:
                wall, cpu = sides[side].advance(chunk)
                record = {"side": side, "chunk": chunk, "step": chunk * rec["chunk"],
                          "wall_s": wall, "cpu_s": cpu, "loadavg": _loadavg(),
                          "time": time.time()}
                append_chunk(chunks_path, record)
                print(f"{net} seed {seed} {side} chunk {chunk}: {wall:.0f} s wall, "
                      f"{cpu:.0f} s CPU, load {record['loadavg']:.1f}", file=sys.stderr,
                      flush=True)
        for side in SIDES:
            sides[side].finish()
    except BaseException:
        for side in sides.values():
            side.kill()
        raise


# -- the official side (runs under the torch Python, with EDSR-PyTorch's src as cwd) -----

def apply_official_shims(src, argv):
    """Makes EDSR-PyTorch master + the official wdsr_b.py run on a CPU with today's torch,
    without editing their files. Returns the argv left for option.py.

    - wdsr_b.py moves its RGB mean with `.cuda()`: a no-op on a machine without CUDA;
    - wdsr_b.py defines `MODEL` but EDSR-PyTorch calls `make_model(args)`: added;
    - wdsr_b.py reads `args.r_mean/g_mean/b_mean`, options of the WDSR authors' fork:
      set to DIV2K's mean after option.py parsed the rest.
    """
    import importlib

    import torch

    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *a, **k: self
    sys.path.insert(0, src)
    os.chdir(src)
    sys.argv = [os.path.join(src, "main.py"), *argv]
    option = importlib.import_module("option")
    option.args.r_mean, option.args.g_mean, option.args.b_mean = DIV2K_MEAN
    if option.args.model.lower() == "wdsr_b":
        wdsr_b = importlib.import_module("model.wdsr_b")
        if not hasattr(wdsr_b, "make_model"):
            wdsr_b.make_model = lambda args, parent=False: wdsr_b.MODEL(args)
    return option.args


def official_main(src, argv):
    import runpy

    apply_official_shims(src, argv)
    runpy.run_path(os.path.join(src, "main.py"), run_name="__main__")


def official_sr(src, argv, run_dir, info_path, out_path):
    """Runs each saved official checkpoint on the validation LR images; writes an .npz of
    uint8 SR images per chunk (EDSR-PyTorch's quantize) and its own PSNRs."""
    import importlib

    import imageio.v2 as imageio
    import numpy as np
    import torch

    args = apply_official_shims(src, argv)
    utility = importlib.import_module("utility")
    module = importlib.import_module("model." + args.model.lower())
    net = module.make_model(args)
    info = json.load(open(info_path))
    data_dir = os.path.dirname(info_path)
    valid = [r for r in info["images"] if r["subset"] == "valid"]
    results = {}
    torch.set_grad_enabled(False)
    for path in sorted(glob.glob(os.path.join(run_dir, "model", "model_[0-9]*.pt")),
                       key=lambda p: int(p.rsplit("_", 1)[1][:-3])):
        chunk = int(path.rsplit("_", 1)[1][:-3])
        net.load_state_dict(torch.load(path, map_location="cpu"))
        net.eval()
        arrays, own = {}, []
        for row in valid:
            lr = imageio.imread(os.path.join(data_dir, row["official_lr"]))
            hr = imageio.imread(os.path.join(data_dir, row["official_hr"]))
            x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))).float()[None]
            sr = utility.quantize(net(x), 255)
            y = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1))).float()[None]
            own.append(utility.calc_psnr(sr, y, SCALE, 255))
            arrays[row["official_hr"]] = sr[0].permute(1, 2, 0).numpy().astype(np.uint8)
        np.savez_compressed(os.path.join(out_path, f"sr_{chunk:03d}.npz"),
                            **{k.replace("/", "|"): v for k, v in arrays.items()})
        results[chunk] = float(np.mean(own))
        print(f"chunk {chunk}: EDSR-PyTorch PSNR {results[chunk]:.3f}", file=sys.stderr)
    with open(os.path.join(out_path, "official_psnr.json"), "w") as f:
        json.dump(results, f)


# -- scoring and report (sisr's Python) ---------------------------------------------------

def score_pair(work, net, seed, rec, info, edsr_src, torch_python):
    """Official checkpoints -> SR (torch) -> sisr.metrics.psnr; writes official_scores.json."""
    import numpy as np

    from sisr.imageio import read_image
    from sisr.metrics import div2k_shave, psnr

    run_dir = os.path.join(work, "runs", f"{net}-seed{seed}")
    scores_path = os.path.join(run_dir, "official_scores.json")
    if os.path.isfile(scores_path):
        return
    data_dir = os.path.join(work, "data")
    sr_dir = os.path.join(run_dir, "official_sr")
    os.makedirs(sr_dir, exist_ok=True)
    official_save = os.path.join(run_dir, "official")
    argv = official_options(net, seed, rec, info["n_train"], info["n_valid"], data_dir,
                            official_save)
    subprocess.run([torch_python, os.path.abspath(__file__), "_official_sr", "--edsr-src",
                    edsr_src, "--run-dir", official_save, "--info",
                    os.path.join(data_dir, "images.json"), "--sr-dir", sr_dir, "--", *argv],
                   check=True, cwd=edsr_src, env=official_env())
    own = json.load(open(os.path.join(sr_dir, "official_psnr.json")))
    scores = {}
    shave = div2k_shave(SCALE)
    for path in sorted(glob.glob(os.path.join(sr_dir, "sr_*.npz"))):
        chunk = int(os.path.basename(path)[3:6])
        with np.load(path) as arrays:
            values = [psnr(read_image(os.path.join(data_dir, key.replace("|", "/"))).array,
                           arrays[key], shave=shave) for key in arrays.files]
        scores[chunk] = {"psnr": float(np.mean(values)), "edsr_pytorch_psnr": own[str(chunk)]}
    with open(scores_path, "w") as f:
        json.dump(scores, f, indent=1)


def sisr_scores(run_dir):
    """{chunk: val_psnr} from sisr's training.csv."""
    import csv

    path = os.path.join(_sisr_run_dir(os.path.join(run_dir, "sisr")), "training.csv")
    with open(path, newline="") as f:
        return {int(row["epoch"]) + 1: float(row["val_psnr"]) for row in csv.DictReader(f)}


def curves(records, scores, side, chunk):
    """[(step, wall_s, psnr)] of one side from its chunk records and {chunk: psnr}."""
    points = []
    for step, wall, _ in cumulative(records, side):
        k = step // chunk
        if k in scores:
            points.append((step, wall, scores[k]))
    return points


def summarize(runs, chunk, margin=0.1):
    """Per network: final PSNR per side and seed, their difference and spread, and each
    side's time to reach the official mean final PSNR and to come within `margin` dB of
    it. `runs`: {(net, seed): {"records",
    "sisr": {chunk: psnr}, "official": {chunk: psnr}}}."""
    summary = {}
    for net in sorted({net for net, _ in runs}):
        seeds = sorted(seed for n, seed in runs if n == net)
        per = {side: {seed: curves(runs[net, seed]["records"], runs[net, seed][side], side,
                                   chunk) for seed in seeds} for side in SIDES}
        finals = {side: [per[side][seed][-1][2] for seed in seeds] for side in SIDES}
        walls = {side: [per[side][seed][-1][1] for seed in seeds] for side in SIDES}
        cpus = {side: [cumulative(runs[net, seed]["records"], side)[-1][2] for seed in seeds]
                for side in SIDES}
        target = statistics.fmean(finals["official"])
        reach = {side: [time_to_reach(per[side][seed], target) for seed in seeds]
                 for side in SIDES}
        # Curves flatten at the end, so the exact final is reached late or not at all by
        # a seed: also the time to come within `margin` dB of it.
        near = target - margin
        reach_near = {side: [time_to_reach(per[side][seed], near) for seed in seeds]
                      for side in SIDES}
        diff, seed_range = final_difference(finals["sisr"], finals["official"])
        summary[net] = {
            "seeds": seeds, "steps": per["sisr"][seeds[0]][-1][0], "target_psnr": target,
            "final_psnr": finals, "final_wall_s": walls, "cpu_s": cpus,
            "final_spread": {side: spread(finals[side]) for side in SIDES},
            "difference": diff, "seed_range": seed_range,
            "within_spread": abs(diff) <= seed_range, "time_to_target_s": reach,
            "margin": margin, "near_target_psnr": near, "time_to_near_target_s": reach_near,
            "curves": per,
        }
    return summary


def plot(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = sorted(summary)
    fig, axes = plt.subplots(len(nets), 2, figsize=(11, 4 * len(nets)), squeeze=False)
    colors = {"sisr": "tab:blue", "official": "tab:red"}
    for row, net in zip(axes, nets):
        for side in SIDES:
            for i, (seed, points) in enumerate(sorted(summary[net]["curves"][side].items())):
                steps, walls, psnrs = zip(*points)
                style = "-" if i == 0 else "--"
                label = f"{side} seed {seed}"
                row[0].plot(steps, psnrs, style, color=colors[side], marker="o", ms=3,
                            label=label)
                row[1].plot(walls, psnrs, style, color=colors[side], marker="o", ms=3,
                            label=label)
        for ax, xlabel in zip(row, ("training steps", "wall-clock seconds (own chunks)")):
            ax.axhline(summary[net]["target_psnr"], color="gray", lw=0.8)
            ax.axhline(summary[net]["near_target_psnr"], color="gray", lw=0.8, ls=":")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("validation PSNR (dB, RGB, shave 8)")
            ax.set_title(f"{net} x2")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fmt(value, spec=".0f"):
    return "-" if value is None else format(value, spec)


def report_markdown(summary, rec, loads):
    recipe_line = (f"Recipe: x{rec['scale']}, batch {rec['batch_size']}, LR patch "
                   f"{rec['lr_patch']} (HR {rec['lr_patch'] * rec['scale']}), {rec['chunks']} "
                   f"chunks of {rec['chunk']} steps, learning rate halved after chunk "
                   f"{rec['decay_chunks']}; load average during the chunks "
                   f"{min(loads):.1f}-{max(loads):.1f}.")
    header = ("| network | side | final PSNR per seed (dB) | mean | s to official final, "
              "per seed | s to it - 0.1 dB, per seed | wall s per seed | CPU s per seed |")
    lines = [recipe_line, "", header, "|---|---|---|---|---|---|---|---|"]
    for net, s in sorted(summary.items()):
        for side in SIDES:
            lines.append(
                f"| {net} | {side} | {', '.join(f'{v:.3f}' for v in s['final_psnr'][side])} | "
                f"{s['final_spread'][side][0]:.3f} | "
                f"{', '.join(_fmt(v) for v in s['time_to_target_s'][side])} | "
                f"{', '.join(_fmt(v) for v in s['time_to_near_target_s'][side])} | "
                f"{', '.join(_fmt(v) for v in s['final_wall_s'][side])} | "
                f"{', '.join(_fmt(v) for v in s['cpu_s'][side])} |")
    lines.append("")
    for net, s in sorted(summary.items()):
        lines.append(f"- {net}: sisr - official = {s['difference']:+.3f} dB after {s['steps']} "
                     f"steps; seed-to-seed range {s['seed_range']:.3f} dB "
                     f"({'within' if s['within_spread'] else 'OUTSIDE'} the spread); targets: "
                     f"official mean final {s['target_psnr']:.3f} dB and "
                     f"{s['near_target_psnr']:.3f} dB; times are each side's own "
                     f"chunks' wall-clock seconds at the first validation at or above.")
    return "\n".join(lines) + "\n"


def report(work, out_dir, nets, seeds):
    runs = {}
    rec = None
    loads = []
    for net in nets:
        for seed in seeds:
            run_dir = os.path.join(work, "runs", f"{net}-seed{seed}")
            scores_path = os.path.join(run_dir, "official_scores.json")
            if not os.path.isfile(scores_path):
                print(f"{net} seed {seed}: not scored yet, left out", file=sys.stderr)
                continue
            records = read_chunks(os.path.join(run_dir, "chunks.jsonl"))
            rec = json.load(open(os.path.join(run_dir, "recipe.json")))
            loads += [r["loadavg"] for r in records]
            official = {int(k): v["psnr"] for k, v in json.load(open(scores_path)).items()}
            runs[net, seed] = {"records": records, "sisr": sisr_scores(run_dir),
                               "official": official}
    if not runs:
        raise SystemExit("no scored runs: run `run` and `score` first")
    summary = summarize(runs, rec["chunk"])
    os.makedirs(out_dir, exist_ok=True)
    plot(summary, os.path.join(out_dir, "psnr.png"))
    text = report_markdown(summary, rec, loads)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump({"recipe": rec, "summary": summary}, f, indent=1)
    print(text)


# -- CLI --------------------------------------------------------------------------------

def _parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["prepare", "run", "score", "report", "all", "_official",
                                    "_official_sr"])
    p.add_argument("--work", default=DEFAULT_WORK, help="data and runs (default runs/...)")
    p.add_argument("--report-dir", default=DEFAULT_REPORT)
    p.add_argument("--edsr-src", help="EDSR-PyTorch's src folder (with model/wdsr_b.py)")
    p.add_argument("--torch-python", help="a Python with torch and EDSR-PyTorch's imports")
    p.add_argument("--nets", default="edsr,wdsr-b")
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr-patch", type=int, default=16)
    p.add_argument("--chunk", type=int, default=250, help="steps per chunk (validation)")
    p.add_argument("--chunks", type=int, default=8)
    p.add_argument("--decay-chunks", type=int, default=4,
                   help="halve the learning rate after this many chunks (0: never)")
    p.add_argument("--run-dir")
    p.add_argument("--info")
    p.add_argument("--sr-dir")
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    # After "--": EDSR-PyTorch's options, for the _official modes.
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    args = _parser().parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.rest = rest
    if args.step == "_official":
        official_main(args.edsr_src, args.rest)
        return 0
    if args.step == "_official_sr":
        official_sr(args.edsr_src, args.rest, args.run_dir, args.info, args.sr_dir)
        return 0
    nets = args.nets.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    rec = recipe(args)
    info = None
    if args.step in ("prepare", "all", "run", "score"):
        info = prepare(os.path.join(args.work, "data"))
    if args.step in ("run", "score", "all") and not (args.edsr_src and args.torch_python):
        raise SystemExit("--edsr-src and --torch-python are needed to run the official side")
    if args.step in ("run", "all"):
        # A terminated driver stops its trainers too (they run in sessions of their own).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        # EDSR first for both seeds, then WDSR-B: a study cut short still has whole pairs.
        for net in nets:
            for seed in seeds:
                run_pair(args.work, net, seed, rec, info, os.path.abspath(args.edsr_src),
                         args.torch_python)
    if args.step in ("score", "all"):
        for net in nets:
            for seed in seeds:
                run_dir = os.path.join(args.work, "runs", f"{net}-seed{seed}")
                if run_status(read_chunks(os.path.join(run_dir, "chunks.jsonl")),
                              rec["chunks"]) == "done":
                    score_pair(args.work, net, seed, rec, info,
                               os.path.abspath(args.edsr_src), args.torch_python)
    if args.step in ("report", "all"):
        report(args.work, args.report_dir, nets, seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
