"""Super-resolving videos frame by frame: `upscale_video` (behind `python -m sisr.upscale`
for video inputs).

Needs PyAV, an optional extra (`pip install 'sisr[video]'`): its wheels bring their own
FFmpeg, so no system install is needed. Frames are decoded to RGB (never BGR), run through
the same tiled, compiled `Upscaler` as images, in batches of frames, and encoded in a
background thread while the model runs on the next batch (decoding runs in another one).

The output keeps each frame's timestamp (so the frame rate, variable or not, and the frame
count), the display rotation, and every audio stream, copied packet by packet when the
output container accepts its codec, else re-encoded with the container's default audio
codec. Video is H.264 (libx264, yuv420p) by default, or for `.webm` VP9; without libx264
the fallbacks are libopenh264, then MPEG-4 part 2 (logged). The file is written to a
temporary name and renamed only when complete (`sisr.fileio.atomic_output`).
"""

import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from sisr.errors import SisrError, UsageError
from sisr.fileio import atomic_output, is_temp_name

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
                    ".mts", ".flv", ".wmv", ".ogv", ".3gp")
INSTALL_HINT = "video needs PyAV, an optional extra: pip install 'sisr[video]'"
# LR pixels per forward call that a batch of frames may fill (4 tiles of the CLI's default
# 256); a whole-frame run of a larger video goes one frame at a time.
BATCH_PIXELS = 4 * 256 * 256
MAX_BATCH = 8
# Containers that store no timestamps, only a frame rate (variable timing is lost there).
_CONSTANT_RATE = ("avi",)
_H264 = ("libx264", "libopenh264", "mpeg4")
# Lossless codecs, and the pixel formats that keep RGB exactly in them.
_LOSSLESS = ("ffv1", "png", "utvideo", "huffyuv", "ffvhuff", "libx264rgb", "qtrle", "rawvideo")
_RGB_FORMATS = ("rgb24", "bgr0", "bgr24", "gbrp")


class VideoError(SisrError, ValueError):
    """A video that cannot be read or written; the message names the file."""


def require_av():
    """The `av` module, or a `UsageError` saying how to install it."""
    try:
        import av
    except ImportError as err:
        raise UsageError(INSTALL_HINT) from err
    return av


def is_video_file(path):
    return os.fspath(path).lower().endswith(VIDEO_EXTENSIONS)


def has_video_stream(path):
    """True if FFmpeg opens `path` as a container with a video stream (False without
    PyAV or for anything else)."""
    try:
        import av
    except ImportError:
        return False
    try:
        with av.open(os.fspath(path)) as container:
            return bool(container.streams.video)
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        return False


def media_kind(path):
    """"image", "video" or None, by extension for the known ones, else by content:
    Pillow, then FFmpeg (a container with a video stream)."""
    from sisr import imageio

    if imageio.is_image_file(path):
        return "image"
    if is_video_file(path):
        return "video"
    try:
        from PIL import Image

        with Image.open(path):
            return "image"
    except (OSError, ValueError):
        pass
    return "video" if has_video_stream(path) else None


def list_videos(folder):
    """Sorted videos directly in `folder` that are not images by extension: files with a
    video extension, and others in which FFmpeg finds a video stream. Hidden and
    temporary files are skipped."""
    from sisr import imageio

    folder = os.fspath(folder)
    found = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if (name.startswith(".") or is_temp_name(name) or imageio.is_image_file(name)
                or not os.path.isfile(path)):
            continue
        if is_video_file(name) or has_video_stream(path):
            found.append(path)
    return found


def default_codec(path):
    """The codec `upscale_video` uses for `path` without `codec`: VP9 for WebM, else the
    first of libx264, libopenh264, mpeg4 this FFmpeg can encode."""
    av = require_av()
    if os.fspath(path).lower().endswith(".webm"):
        return "libvpx-vp9"
    for name in _H264:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - PyAV raises various types for unknown codecs
            continue
    raise VideoError(f"{path}: this FFmpeg can encode none of {', '.join(_H264)}; "
                     "pass codec=")


def check_codec(name):
    """Raises `UsageError` unless this FFmpeg has a video encoder called `name`."""
    av = require_av()
    try:
        codec = av.codec.Codec(name, "w")
    except Exception as err:  # noqa: BLE001 - PyAV raises various types for unknown codecs
        raise UsageError(f"codec {name!r}: this FFmpeg has no such encoder") from err
    if codec.type != "video":
        raise UsageError(f"codec {name!r} is not a video encoder")


def _pix_fmt(codec):
    """yuv420p (what players expect), but RGB for lossless codecs (FFV1, PNG, ...) so that
    nothing is lost to a colour conversion."""
    formats = [f.name for f in (codec.video_formats or [])]
    if codec.name in _LOSSLESS:
        for name in _RGB_FORMATS:
            if name in formats:
                return name
    if not formats or "yuv420p" in formats:
        return "yuv420p"
    return formats[0]


@dataclass
class VideoResult:
    """What `upscale_video` wrote."""

    path: str
    frames: int
    width: int
    height: int
    codec: str
    audio: list = field(default_factory=list)  # per audio stream: "copied CODEC" or ...


def batch_size(upscaler, height, width):
    """Frames per forward call: as many tile windows as fit in `BATCH_PIXELS` LR pixels,
    that budget divided by scale^2 / 4 above x2, as the activations at the output size
    dominate (at least 1, at most `MAX_BATCH`)."""
    margin = upscaler.overlap or 0
    tile_h = min(height, upscaler.tile or height) + 2 * margin
    tile_w = min(width, upscaler.tile or width) + 2 * margin
    budget = BATCH_PIXELS // max(1, upscaler.scale ** 2 // 4)
    return max(1, min(MAX_BATCH, budget // max(1, tile_h * tile_w)))


def count_frames(path):
    """The frame count the container declares (0 if unknown)."""
    av = require_av()
    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                return 0
            stream = container.streams.video[0]
            if stream.frames:
                return stream.frames
            rate = stream.average_rate or stream.guessed_rate
            if stream.duration and rate:
                return int(round(float(stream.duration * stream.time_base * rate)))
            if container.duration and rate:
                return int(round(container.duration / 1e6 * float(rate)))
    except (av.FFmpegError, OSError, ValueError):
        pass
    return 0


class _Stop(Exception):
    """Another stage failed; this one stops quietly."""


_END = object()


class _Pipe:
    """A bounded queue between two threads that gives up when the run is cancelled."""

    def __init__(self, cancel, size):
        self.queue = queue.Queue(size)
        self.cancel = cancel

    def put(self, item):
        while not self.cancel.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stop

    def get(self):
        while not self.cancel.is_set():
            try:
                return self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Stop


def _thread(target, errors, cancel, *args):
    def run():
        try:
            target(*args)
        except _Stop:
            pass
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            errors.append(err)
            cancel.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _reader(av, src, container, stream, audio, out):
    """Decodes video frames as ("video", rgb, pts, time_base) and passes audio packets
    through as ("audio", packet) in demuxing order."""
    count, last_end = 0, None
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    try:
        for packet in container.demux(stream, *audio):
            if packet.stream.type == "audio":
                if packet.dts is not None:
                    out.put(("audio", packet))
                continue
            for frame in packet.decode():
                pts, time_base = frame.pts, frame.time_base or stream.time_base
                if pts is None or container.format.name in _CONSTANT_RATE:
                    # No timestamps (AVI's come in decoding order): evenly spaced.
                    pts, time_base = count, 1 / rate
                if count == 0:
                    out.put(("rotation", frame.rotation))
                out.put(("video", frame.to_ndarray(format="rgb24"), pts, time_base))
                count += 1
                last_end = (pts, time_base)
    except av.FFmpegError as err:
        raise VideoError(f"{src}: corrupt video ({_reason(err)}) after {count} frames") \
            from err
    if count == 0:
        raise VideoError(f"{src}: no video frame could be decoded (corrupt or truncated?)")
    if stream.frames and count < stream.frames - max(1, stream.frames // 50):
        raise VideoError(f"{src}: truncated video: {count} of {stream.frames} frames decoded")
    declared = _declared_duration(stream)
    if declared is not None:
        start = float((stream.start_time or 0) * stream.time_base)
        got = float(last_end[0] * last_end[1]) + 1 / float(rate) - start
        if got < declared - max(2 / float(rate), 0.05 * declared):
            raise VideoError(f"{src}: truncated video: {got:.2f} s of {declared:.2f} s "
                             "decoded")
    out.put(_END)


def _declared_duration(stream):
    """Seconds of video the container declares for `stream` (Matroska: a DURATION tag),
    or None."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION")
    try:
        hours, minutes, seconds = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except (AttributeError, ValueError):
        return None


def _reason(err):
    return getattr(err, "strerror", None) or str(err)


def _open_output(av, tmp, fmt, codec, size, rate, time_base, rotation, crf, pix_fmt):
    output = av.open(tmp, "w", format=fmt)
    stream = output.add_stream(codec, rate=rate)
    context = stream.codec_context
    stream.width, stream.height = size
    stream.pix_fmt = pix_fmt or _pix_fmt(context.codec)
    context.time_base = time_base
    stream.time_base = time_base
    if crf is not None:
        if codec == "libvpx-vp9":
            context.bit_rate = 0
        stream.options = {**stream.options, "crf": str(crf)}
    if rotation:
        stream.set_display_rotation(rotation)
    return output, stream


def _audio_streams(av, output, inputs, dst):
    """Output streams for the input audio streams: copies where the container takes the
    codec, else encoders of its default audio codec.
    Returns ({input stream index: (out, copied)}, notes)."""
    streams, notes = {}, []
    supported = output.supported_codecs
    for stream in inputs:
        name = stream.codec_context.name
        if name in supported:
            streams[stream.index] = (output.add_stream_from_template(stream), True)
            notes.append(f"copied {name}")
            continue
        target = output.default_audio_codec
        if not target or target == "none":
            raise VideoError(f"{dst}: the container takes no audio; {name} cannot be kept")
        out = output.add_stream(target, rate=stream.codec_context.sample_rate)
        out.layout = stream.codec_context.layout
        streams[stream.index] = (out, False)
        notes.append(f"re-encoded {name} as {target}")
        log.warning("%s: audio %s re-encoded as %s (the container does not take %s)",
                    dst, name, target, name)
    return streams, notes


def _writer(av, tmp, fmt, src_audio, settings, pipe, result):
    """Encodes SR frames and muxes them with the audio; opens the output at the first
    SR frame (its size is known then), holding audio packets that come before."""
    output = video = None
    audio, waiting, rotation = {}, [], 0
    try:
        while True:
            item = pipe.get()
            if item is _END:
                break
            kind = item[0]
            if kind == "rotation":
                rotation = item[1]
                continue
            if kind == "audio":
                if output is None:
                    waiting.append(item[1])
                else:
                    _mux_audio(output, audio, item[1])
                continue
            _, sr, pts, time_base = item
            if fmt in _CONSTANT_RATE:  # frame numbers as timestamps
                pts = round(pts * time_base * settings["rate"])
                time_base = 1 / settings["rate"]
            if output is None:
                output, video = _open_output(
                    av, tmp, fmt, settings["codec"], (sr.shape[1], sr.shape[0]),
                    settings["rate"], time_base, rotation, settings["crf"],
                    settings["pix_fmt"])
                audio, result.audio = _audio_streams(av, output, src_audio, result.path)
                output.start_encoding()
                result.width, result.height = sr.shape[1], sr.shape[0]
                for packet in waiting:
                    _mux_audio(output, audio, packet)
                waiting = []
            frame = av.VideoFrame.from_ndarray(sr, format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            output.mux(video.encode(frame))
            result.frames += 1
        if output is not None:
            output.mux(video.encode(None))
            for out, copied in audio.values():
                if not copied:
                    output.mux(out.encode(None))
    finally:
        if output is not None:
            output.close()


def _mux_audio(output, audio, packet):
    out, copied = audio[packet.stream.index]
    if copied:
        packet.stream = out
        output.mux(packet)
        return
    for frame in packet.decode():
        frame.pts = None
        output.mux(out.encode(frame))


def upscale_video(model, src, dst, *, tile=None, overlap=None, self_ensemble=False,
                  precision="float32", codec=None, crf=None, pix_fmt=None, batch=None,
                  outscale=None, overwrite=False, on_frames=None):
    """Super-resolves every frame of video `src` into video `dst`, keeping timestamps,
    rotation and audio (see the module's docstring).

    Args:
        model: a Keras SR model or a `sisr.upscaling.Upscaler` (then `tile`, `overlap`,
            `self_ensemble` and `precision` are its own).
        src, dst: paths; the container of `dst` follows its extension.
        codec: FFmpeg encoder name (default: `default_codec(dst)`).
        crf: constant rate factor for codecs that have one (libx264: 0..51, lower is
            better); None leaves the codec's default.
        pix_fmt: encoder pixel format (default: yuv420p, or RGB for codecs that store it).
        batch: frames per forward call (default `batch_size`).
        outscale: any output scale: each frame's model output resized with Lanczos to
            `outscale` times the input, as `upscale --outscale` does for images.
        overwrite: replace an existing `dst`; otherwise it raises `FileExistsError`.
        on_frames: optional callable, called with the number of frames just upscaled.

    Returns:
        `VideoResult`. Raises `VideoError` naming the file for an unreadable, corrupt or
        truncated video, or one without a video stream; nothing is left at `dst` then.
    """
    from sisr.upscaling import Upscaler, outscale_size

    if outscale is not None:
        outscale_size(1, 1, outscale)  # refused before any work if not a positive number
    av = require_av()
    src, dst = os.fspath(src), os.fspath(dst)
    upscaler = model if isinstance(model, Upscaler) else Upscaler(
        model, tile=tile, overlap=overlap, self_ensemble=self_ensemble, precision=precision)
    if not overwrite and os.path.lexists(dst):  # before the expensive part
        raise FileExistsError(f"{dst} exists; not overwriting it (use --force)")
    try:
        fmt = av.format.ContainerFormat(_container_name(av, dst), "w").name
    except (ValueError, av.FFmpegError) as err:
        raise VideoError(f"{dst}: no container format for this extension") from err
    if codec is None:
        codec = default_codec(dst)
        if codec in _H264[1:]:
            log.warning("%s: libx264 unavailable in this FFmpeg; encoding with %s", dst, codec)
    check_codec(codec)

    try:
        container = av.open(src)
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoError(f"{src}: not a video or unreadable ({_reason(err)})") from err
    with container, atomic_output(dst, overwrite) as tmp:
        if not container.streams.video:
            raise VideoError(f"{src}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        audio = list(container.streams.audio)
        result = VideoResult(dst, 0, 0, 0, codec)
        settings = {"codec": codec, "crf": crf, "pix_fmt": pix_fmt, "rate": rate}
        cancel, errors = threading.Event(), []
        # Few SR frames wait for the encoder: they are scale^2 times larger than LR ones.
        decoded, encoded = _Pipe(cancel, 2 * MAX_BATCH), _Pipe(cancel, 4)
        threads = [_thread(_reader, errors, cancel, av, src, container, stream, audio, decoded),
                   _thread(_writer, errors, cancel, av, tmp, fmt, audio, settings, encoded,
                           result)]
        try:
            _run_model(upscaler, decoded, encoded, batch, on_frames, outscale)
        except _Stop:
            pass
        except BaseException:
            cancel.set()
            raise
        finally:
            for thread in threads:
                thread.join()
        if errors:
            raise errors[0]
    return result


def _container_name(av, path):
    """FFmpeg's muxer for the extension of `path`."""
    ext = os.path.splitext(path)[1].lower()
    names = {".mkv": "matroska", ".m4v": "mp4", ".mts": "mpegts", ".ts": "mpegts",
             ".ogv": "ogg", ".mpg": "mpeg", ".wmv": "asf", ".3gp": "3gp", ".mov": "mov",
             ".webm": "webm", ".avi": "avi", ".flv": "flv", ".mp4": "mp4", ".mpeg": "mpeg"}
    if ext not in names:
        raise ValueError(ext)
    return names[ext]


def _run_model(upscaler, decoded, encoded, batch, on_frames, outscale=None):
    """Main-thread stage: batches of decoded frames through the model."""
    from sisr.upscaling import outscale_size, resize_output

    frames, stamps = [], []

    def flush():
        if not frames:
            return
        for sr, (pts, time_base) in zip(upscaler.batch(np.stack(frames)), stamps):
            if outscale is not None:
                sr = resize_output(sr, *outscale_size(*frames[0].shape[:2], outscale))
            encoded.put(("video", sr, pts, time_base))
        if on_frames is not None:
            on_frames(len(frames))
        frames.clear()
        stamps.clear()

    size = batch
    while True:
        item = decoded.get()
        if item is _END:
            flush()
            encoded.put(_END)
            return
        if item[0] != "video":
            encoded.put(item)
            continue
        _, rgb, pts, time_base = item
        if size is None:
            size = batch_size(upscaler, *rgb.shape[:2])
        if frames and rgb.shape != frames[0].shape:
            flush()
        frames.append(rgb)
        stamps.append((pts, time_base))
        if len(frames) >= size:
            flush()
