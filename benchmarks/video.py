"""Speed and peak memory of `sisr.video.upscale_video` on a 640x360 25 fps clip (run by hand).

Cases: WDSR-B baseline x2 and SRResNet x4 (random weights: speed does not depend on them),
float32 and bfloat16, default tiles of `sisr.upscale` (256 LR pixels + the receptive-field
margin), the default output (H.264, yuv420p, libx264's default CRF) and an AAC audio track
copied. The clip (a moving smooth random texture, made here with PyAV) is `--seconds` long
(10 by default; SRResNet x4 takes seconds per frame on a small CPU, so shorter clips are
useful on busy machines).

Each run is a fresh subprocess, so its peak RSS (from wait4) is its own. Reported:
frames per second over the whole `upscale_video` call; the share of that wall time spent
outside the model (`upscaler.batch`), i.e. decoding and encoding that the background threads
did not hide; and, for scale, the time decoding and encoding alone take (a decode-only pass
over the input plus an encode-only pass of the output frames, serially) over the run's
time. The load average is printed with the figures: on a shared machine they are noisy.

    python benchmarks/video.py                           # all cases, 10 s clip
    python benchmarks/video.py --cases wdsr-b-x2 --seconds 4 --precisions float32
"""

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

if __package__:
    from .common import format_table, median, model_cases, worker_result
else:  # run as a script: python benchmarks/video.py
    from common import format_table, median, model_cases, worker_result

SIZE = (360, 640)  # LR height, width
RATE = 25
CASES = model_cases("wdsr-b-x2", "srresnet-x4")


def make_clip(path, seconds, seed=0):
    """An H.264 (yuv420p) MP4 of a smooth random texture panning 2 pixels a frame, with
    an AAC tone, `seconds` long."""
    from fractions import Fraction

    import av
    import numpy as np

    from sisr.imresize import imresize

    rng = np.random.default_rng(seed)
    frames = int(seconds * RATE)
    h, w = SIZE
    wide = imresize(rng.integers(0, 256, (h // 8, (w + 2 * frames) // 8 + 1, 3),
                                 dtype=np.uint8), scale=8)
    with av.open(path, "w") as out:
        video = out.add_stream("libx264", rate=RATE)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        audio = out.add_stream("aac", rate=44100)
        audio.layout = "stereo"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(wide[:h, 2 * i:2 * i + w]), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, RATE)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        t = np.arange(int(seconds * 44100)) / 44100
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, len(tone), 4410):
            chunk = np.repeat(tone[None, start:start + 4410], 2, axis=0)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 44100, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))


def codec_seconds(src, dst):
    """Decode-only seconds of `src` and encode-only seconds of the frames of `dst` with the
    same encoder settings."""
    from fractions import Fraction

    import av

    start = time.perf_counter()
    with av.open(src) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
    decode = time.perf_counter() - start
    # Output frames decoded one at a time (not held: that would inflate the peak RSS);
    # only the encoding is timed.
    encode = 0.0
    with tempfile.TemporaryDirectory() as tmp, av.open(dst) as container, \
            av.open(os.path.join(tmp, "e.mp4"), "w") as out:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        video = out.add_stream("libx264", rate=RATE)
        video.height, video.width = stream.codec_context.height, stream.codec_context.width
        video.pix_fmt = "yuv420p"
        for i, decoded in enumerate(container.decode(stream)):
            array = decoded.to_ndarray(format="rgb24")
            start = time.perf_counter()
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, RATE)
            out.mux(video.encode(frame))
            encode += time.perf_counter() - start
        start = time.perf_counter()
        out.mux(video.encode(None))
        encode += time.perf_counter() - start
    return decode, encode


def worker(case, precision, src, tile):
    """One measured run in this process; prints a JSON line with its figures."""
    import numpy as np

    from sisr.model import build
    from sisr.upscaling import Upscaler
    from sisr.video import batch_size, upscale_video

    builder, arguments = CASES[case]
    model = build(builder, **arguments)
    upscaler = Upscaler(model, scale=arguments["scale"], tile=tile or None,
                        precision=precision)
    batch = batch_size(upscaler, *SIZE)
    upscaler.batch(np.zeros((batch, *SIZE, 3), np.uint8))  # trace outside the timing
    model_seconds = []
    run_batch = upscaler.batch

    def timed(frames):
        start = time.perf_counter()
        out = run_batch(frames)
        model_seconds.append(time.perf_counter() - start)
        return out

    upscaler.batch = timed
    with tempfile.TemporaryDirectory() as tmp:
        dst = os.path.join(tmp, "out.mp4")
        start = time.perf_counter()
        result = upscale_video(upscaler, src, dst)
        seconds = time.perf_counter() - start
        decode, encode = codec_seconds(src, dst)
    print("RESULT " + json.dumps({
        "seconds": seconds, "frames": result.frames, "model_seconds": sum(model_seconds),
        "decode": decode, "encode": encode, "batch": batch, "audio": result.audio}),
        flush=True)


def run_case(case, precision, src, tile):
    command = [sys.executable, os.path.abspath(__file__), "--worker", case,
               "--precisions", precision, "--worker-clip", src, "--tile", str(tile)]
    return worker_result(command, f"{case} {precision}")


def main(argv=None):
    from sisr.upscale import DEFAULT_TILE

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES), help=", ".join(CASES))
    p.add_argument("--precisions", default="float32,bfloat16")
    p.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    p.add_argument("--repeats", type=int, default=1, help="rounds (medians reported)")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-clip", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.precisions, args.worker_clip, args.tile)
        return 0
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    precisions = [x.strip() for x in args.precisions.split(",") if x.strip()]
    if set(cases) - set(CASES) or set(precisions) - {"float32", "bfloat16"}:
        p.error(f"cases: {', '.join(CASES)}; precisions: float32, bfloat16")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "clip.mp4")
        make_clip(src, args.seconds)
        runs = [(c, x) for c in cases for x in precisions]
        found = {run: [] for run in runs}
        for r in range(args.repeats):
            for case, precision in runs:
                load = os.getloadavg()[0]
                result = run_case(case, precision, src, args.tile)
                result["load"] = load
                found[(case, precision)].append(result)
                print(f"  round {r + 1}: {case} {precision}: {result['frames']} frames "
                      f"{result['seconds']:.1f} s, load {load:.1f}", file=sys.stderr)
    for case, precision in runs:
        results = found[(case, precision)]
        t = median([f["seconds"] for f in results])
        outside = median([1 - f["model_seconds"] / f["seconds"] for f in results])
        alone = median([(f["decode"] + f["encode"]) / f["seconds"] for f in results])
        rows.append([case, precision, results[0]["frames"], results[0]["batch"], f"{t:.1f}",
                     f"{results[0]['frames'] / t:.2f}", f"{100 * outside:.1f}%",
                     f"{100 * alone:.1f}%",
                     f"{median([f['peak_gb'] for f in results]):.2f}",
                     f"{median([f['load'] for f in results]):.1f}"])
    print(f"clip {SIZE[1]}x{SIZE[0]} {RATE} fps, {args.seconds:g} s, H.264 + AAC in and out, "
          f"tile {args.tile}; {os.cpu_count()} CPUs")
    print(format_table(
        ["case", "precision", "frames", "batch", "seconds", "frames/s",
         "outside model", "decode+encode alone", "peak RSS GB", "load avg"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
