"""sisr.video (upscale_video) and video inputs of the sisr.upscale CLI, on clips of a few
frames made here with PyAV (the `video` extra); skipped without it."""

import os
import sys
from fractions import Fraction

import numpy as np
import pytest

import sisr
from sisr import upscale as up
from sisr import upscaling
from sisr import video as sv
from sisr.model import edsr

av = pytest.importorskip("av")

SIZE = (24, 32)  # LR height, width (even, for yuv420p)


def pattern(i, size=SIZE):
    """A frame with a square that moves with `i` over a gradient (RGB: the channels
    differ, so a BGR/RGB swap shows)."""
    h, w = size
    y, x = np.mgrid[:h, :w]
    frame = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 40)], -1).astype(np.uint8)
    y0, x0 = (2 * i) % (h - 6), (3 * i) % (w - 6)
    frame[y0:y0 + 6, x0:x0 + 6] = (250, 30, 120)
    return frame


def make_clip(path, frames=6, rate=10, codec="ffv1", pix_fmt="bgr0", audio=False,
              pts=None, rotation=0, size=SIZE):
    """Writes a clip of `frames` pattern frames (timestamps `pts` in 1/1000 s if given)
    with an optional 16-bit PCM/AAC tone as long as the video."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = size[1], size[0]
        stream.pix_fmt = pix_fmt
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        sound = None
        if audio:
            name = "pcm_s16le" if str(path).endswith((".mkv", ".avi", ".mov")) else "aac"
            sound = out.add_stream(name, rate=8000)
            sound.layout = "mono"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(i, size), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, 1000)
            else:
                frame.pts, frame.time_base = i, Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if sound is not None:
            samples = 8000 * frames // rate
            t = np.arange(samples) / 8000
            tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
            for start in range(0, samples, 800):
                chunk = tone[start:start + 800][None]
                frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
                frame.sample_rate, frame.pts = 8000, start
                frame.time_base = Fraction(1, 8000)
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return str(path)


def read_clip(path):
    """(RGB frames, their times in s, video stream facts, audio duration in s or None)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        facts = {"codec": stream.codec_context.name, "rate": stream.average_rate,
                 "pix_fmt": stream.codec_context.pix_fmt}
        frames, times, rotation = [], [], 0
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * frame.time_base))
            rotation = frame.rotation
        facts["rotation"] = rotation
    audio = None
    with av.open(str(path)) as container:  # again: the first pass read to the end
        if container.streams.audio:
            a = container.streams.audio[0]
            facts["audio_codec"] = a.codec_context.name
            samples = sum(f.samples for f in container.decode(a))
            audio = samples / a.codec_context.sample_rate
            assert audio > 0
    return frames, times, facts, audio


@pytest.fixture(scope="module")
def model():
    return edsr(2, num_filters=8, num_res_blocks=1)


@pytest.fixture
def model_file(tmp_path, model):
    path = tmp_path / "tiny-x2.keras"
    sisr.save_model(model, path)
    return str(path)


# ------------------------------------------------------------------ library


def test_lossless_output_equals_upscale_image_per_frame(tmp_path, model):
    src = make_clip(tmp_path / "in.mkv", frames=7, audio=True)
    dst = tmp_path / "out.mkv"
    assert sisr.upscale_video is sv.upscale_video
    result = sisr.upscale_video(model, src, dst, tile=10, codec="ffv1")
    assert result.frames == 7 and (result.width, result.height) == (64, 48)
    assert result.audio == ["copied pcm_s16le"]
    frames_in, times_in, _, audio_in = read_clip(src)
    frames_out, times_out, facts, audio_out = read_clip(dst)
    assert facts["pix_fmt"] in ("gbrp", "bgr0", "rgb24")  # RGB kept: nothing lost
    assert facts["rate"] == 10
    assert times_out == pytest.approx(times_in)
    assert audio_out == pytest.approx(audio_in)
    assert facts["audio_codec"] == "pcm_s16le"
    upscaler = upscaling.Upscaler(model, tile=10)
    for lr, sr in zip(frames_in, frames_out, strict=True):
        expected = upscaling.upscale_image(upscaler, lr)
        # Frames go through the model in batches: float rounding may move a level.
        diff = np.abs(sr.astype(int) - expected)
        assert diff.max() <= 1 and np.mean(diff > 0) < 0.01


def test_default_h264_mp4_keeps_rate_count_audio_and_colours(tmp_path, model):
    src = make_clip(tmp_path / "in.mp4", frames=8, rate=25, codec="libx264",
                    pix_fmt="yuv444p", audio=True)
    dst = tmp_path / "out.mp4"
    result = sv.upscale_video(model, src, dst)
    assert result.codec == "libx264" and result.audio == ["copied aac"]
    frames_in, times_in, _, audio_in = read_clip(src)
    frames_out, times_out, facts, audio_out = read_clip(dst)
    assert (facts["codec"], facts["pix_fmt"], facts["rate"]) == ("h264", "yuv420p", 25)
    assert len(frames_out) == 8 and times_out == pytest.approx(times_in)
    assert audio_out == pytest.approx(audio_in, abs=0.03)  # AAC frames: 1024 samples
    for lr, sr in zip(frames_in, frames_out):
        expected = upscaling.upscale_image(model, lr).astype(float)
        # yuv420p halves the chroma resolution of a random model's noisy output: the luma
        # is what stays close (measured 35-36 dB at libx264's default CRF 23).
        assert psnr(sr @ upscaling.LUMA, expected @ upscaling.LUMA) > 32
    # libx264 without loss (CRF 0, no chroma subsampling): only the RGB<->YUV rounding.
    lossless = tmp_path / "lossless.mkv"
    sv.upscale_video(model, src, lossless, crf=0, pix_fmt="yuv444p")
    for lr, sr in zip(frames_in, read_clip(lossless)[0], strict=True):
        assert psnr(sr, upscaling.upscale_image(model, lr)) > 45  # measured 52 dB


def psnr(a, b):
    return 10 * np.log10(255 ** 2 / np.mean((np.asarray(a, float) - b) ** 2))


def test_variable_timestamps_and_rotation_are_kept(tmp_path, model):
    pts = [0, 40, 120, 130, 300]
    src = make_clip(tmp_path / "vfr.mkv", frames=5, pts=pts, rotation=90)
    dst = tmp_path / "vfr_x2.mkv"
    sv.upscale_video(model, src, dst, codec="ffv1")
    _, times, facts, audio = read_clip(dst)
    assert times == pytest.approx([p / 1000 for p in pts])
    assert facts["rotation"] == 90 and audio is None


def test_batches_equal_single_frames(model):
    frames = np.stack([pattern(i) for i in range(3)])
    upscaler = upscaling.Upscaler(model, tile=9, self_ensemble=True)
    batch = upscaler.batch(frames)
    for frame, sr in zip(frames, batch):
        assert np.abs(sr.astype(int) - upscaler(frame)).max() <= 1


def test_errors_name_the_file_and_leave_nothing(tmp_path, model):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    with pytest.raises(sv.VideoError, match="notes.mp4: not a video"):
        sv.upscale_video(model, text, tmp_path / "a.mp4")
    sound = tmp_path / "tone.wav"
    with av.open(str(sound), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                           layout="mono")
        frame.sample_rate = 8000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(sv.VideoError, match="tone.wav: no video stream"):
        sv.upscale_video(model, sound, tmp_path / "b.mp4")
    clip = make_clip(tmp_path / "cut.mp4", frames=10, codec="libx264", pix_fmt="yuv420p")
    data = open(clip, "rb").read()
    with open(clip, "wb") as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(sv.VideoError, match="cut.mp4"):
        sv.upscale_video(model, clip, tmp_path / "c.mp4")
    assert sorted(os.listdir(tmp_path)) == ["cut.mp4", "notes.mp4", "tone.wav"]


def test_truncated_matroska_is_an_error(tmp_path, model):
    clip = make_clip(tmp_path / "cut.mkv", frames=30)
    data = open(clip, "rb").read()
    with open(clip, "wb") as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(sv.VideoError, match="cut.mkv: truncated|cut.mkv: corrupt"):
        sv.upscale_video(model, clip, tmp_path / "out.mkv", codec="ffv1")
    assert not (tmp_path / "out.mkv").exists()


def test_existing_output_is_refused_and_kept(tmp_path, model):
    src = make_clip(tmp_path / "in.mkv", frames=2)
    dst = tmp_path / "out.mkv"
    dst.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="use --force"):
        sv.upscale_video(model, src, dst)
    assert dst.read_bytes() == b"keep"
    sv.upscale_video(model, src, dst, overwrite=True, codec="ffv1")
    assert len(read_clip(dst)[0]) == 2


def test_interrupted_run_leaves_no_file(tmp_path, model):
    src = make_clip(tmp_path / "in.mkv", frames=6)

    def interrupt(count):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sv.upscale_video(model, src, tmp_path / "out.mkv", batch=1, on_frames=interrupt)
    assert sorted(os.listdir(tmp_path)) == ["in.mkv"]


def test_missing_pyav_says_how_to_install(tmp_path, model_file, monkeypatch, capsys):
    src = make_clip(tmp_path / "clip.mkv", frames=2)
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    with pytest.raises(sisr.errors.UsageError, match=r"pip install 'sisr\[video\]'"):
        sv.require_av()
    assert up.main(["-i", src, "-o", str(tmp_path / "out"), "--model", model_file]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: {sv.INSTALL_HINT}"


# ------------------------------------------------------------------ CLI


def test_cli_one_clip_to_a_named_file(tmp_path, model_file, caplog):
    src = make_clip(tmp_path / "clip.mp4", frames=4, codec="libx264", pix_fmt="yuv420p",
                    audio=True)
    dst = tmp_path / "clip_x2.mp4"
    assert up.main(["-i", src, "-o", str(dst), "--model", model_file, "--tile", "16",
                    "--crf", "10", "-q"]) == 0
    frames, _, facts, audio = read_clip(dst)
    assert len(frames) == 4 and frames[0].shape == (48, 64, 3) and audio is not None
    assert up.main(["-i", src, "-o", str(dst), "--model", model_file, "-q"]) == 1
    assert "clip_x2.mp4 exists" in caplog.text


def test_cli_folder_of_images_videos_and_bad_files(tmp_path, model_file, caplog):
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "a.mkv", frames=3)
    # A video known by its content only.
    os.replace(make_clip(tmp_path / "x.mkv", frames=2), folder / "noext")
    from PIL import Image

    Image.fromarray(pattern(0)).save(folder / "b.png")
    (folder / "c.avi").write_bytes(b"RIFF broken")
    (folder / "readme.txt").write_text("not media")
    out = tmp_path / "out"
    status = up.main(["-i", str(folder), "-o", str(out), "--model", model_file, "-q",
                      "--codec", "ffv1"])
    assert status == 1
    assert sorted(os.listdir(out)) == ["a_x2.mkv", "b_x2.png", "noext_x2.mkv"]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "c.avi: not a video" in errors[0]
    assert len(read_clip(out / "noext_x2.mkv")[0]) == 2


def test_cli_refuses_unknown_codec(tmp_path, model_file, capsys):
    src = make_clip(tmp_path / "clip.mkv", frames=2)
    assert up.main(["-i", src, "-o", str(tmp_path / "o"), "--model", model_file,
                    "--codec", "no-such-codec"]) == 2
    assert "no-such-codec" in capsys.readouterr().err


@pytest.mark.parametrize("ext,codec,audio", [(".webm", "vp9", "re-encoded pcm_s16le as "),
                                             (".avi", "h264", "copied pcm_s16le")])
def test_other_containers_get_their_codecs_and_keep_the_audio(tmp_path, model, ext, codec,
                                                              audio):
    src = make_clip(tmp_path / "in.mkv", frames=5, audio=True)
    dst = tmp_path / f"out{ext}"
    result = sv.upscale_video(model, src, dst)
    assert result.audio[0].startswith(audio)  # WebM takes no PCM: re-encoded (Opus)
    _, times_in, _, audio_in = read_clip(src)
    frames, times, facts, audio_out = read_clip(dst)
    assert (len(frames), facts["codec"], facts["rate"]) == (5, codec, 10)
    if ext != ".avi":  # AVI has a frame rate, and no timestamps (those read are not)
        assert times == pytest.approx(times_in)
    assert audio_out == pytest.approx(audio_in, abs=0.03)
    lows = read_clip(src)[0]
    for lr, sr in zip(lows, frames):  # in order
        expected = upscaling.upscale_image(model, lr).astype(float)
        assert psnr(sr @ upscaling.LUMA, expected @ upscaling.LUMA) > 32


def test_outscale_resizes_every_frame_as_for_images(tmp_path, model, model_file):
    src = make_clip(tmp_path / "in.mkv", frames=3)
    dst = tmp_path / "out.mkv"
    result = sisr.upscale_video(model, src, dst, codec="ffv1", outscale=1.5)
    assert result.frames == 3 and (result.width, result.height) == (48, 36)
    frames_in, _, _, _ = read_clip(src)
    frames_out, _, _, _ = read_clip(dst)
    upscaler = upscaling.Upscaler(model)
    for lr, sr in zip(frames_in, frames_out, strict=True):
        expected = upscaling.resize_output(upscaling.upscale_image(upscaler, lr), 36, 48)
        assert np.abs(sr.astype(int) - expected).max() <= 1
    with pytest.raises(sisr.SisrError, match="outscale"):
        sisr.upscale_video(model, src, tmp_path / "bad.mkv", outscale=-1)
    assert not os.path.exists(tmp_path / "bad.mkv")
    out = tmp_path / "cli"
    assert up.main(["-i", src, "-o", str(out), "--model", model_file, "--outscale", "3",
                    "-q"]) == 0
    frames_cli, _, _, _ = read_clip(out / "in_x3.mkv")
    assert frames_cli[0].shape == (72, 96, 3)
