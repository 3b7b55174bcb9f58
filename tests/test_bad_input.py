"""Hostile or careless input: malformed checkpoints and archives, bombs, outputs that would
overwrite inputs or unrelated files. Each is one clear error, and nothing is lost."""

import json
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

import sisr
from sisr import export as export_module
from sisr import upscale as up
from sisr.imageio import ImageError, inspect_image, read_image, read_rgb
from sisr.model import edsr
from sisr.port import CheckpointError, load_state_dict
from peak_memory import PRINT_PEAK, peak_kib
from sisr.saving import MAX_CONFIG_BYTES, ModelError


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "tiny-x2.keras"
    sisr.save_model(edsr(2, num_filters=4, num_res_blocks=1), path)
    return str(path)


# --------------------------------------------------------------- archives and checkpoints


def test_keras_archive_with_a_huge_config_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", " " * (MAX_CONFIG_BYTES + 1))  # compresses to ~16 KB
    assert path.stat().st_size < 100_000
    with pytest.raises(ModelError, match=r"bomb.keras: refused, its config.json unpacks to"):
        sisr.load_model(path)
    many = tmp_path / "many.keras"
    with zipfile.ZipFile(many, "w") as archive:
        for i in range(1001):
            archive.writestr(f"f{i}", "")
    with pytest.raises(ModelError, match=r"many.keras: refused, 1001 entries"):
        sisr.load_model(many)


def _with_weights(model_file, path, write_weights):
    """A copy of the .keras `model_file` whose model.weights.h5 `write_weights(archive)`
    writes instead."""
    with zipfile.ZipFile(model_file) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            if info.filename != "model.weights.h5":
                target.writestr(info, source.read(info))
        write_weights(target)
    return path


def _deflated_zeros(archive, size):
    info = zipfile.ZipInfo("model.weights.h5")
    info.compress_type = zipfile.ZIP_DEFLATED
    with archive.open(info, "w", force_zip64=True) as member:
        chunk = bytes(2**22)
        for _ in range(size // len(chunk)):
            member.write(chunk)


def test_keras_weights_larger_than_the_config_implies_are_refused_unread(
        model_file, tmp_path, monkeypatch):
    # 256 MiB of zeros deflate to ~250 KB.
    path = _with_weights(model_file, tmp_path / "bomb.keras",
                         lambda archive: _deflated_zeros(archive, 2**28))
    assert path.stat().st_size < 2**21
    opened = []
    original = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: (
        opened.append(getattr(name, "filename", name)), original(self, name, *a, **k))[1])
    with pytest.raises(ModelError, match=r"bomb.keras: refused, its model.weights.h5 unpacks "
                                         r"to 268,435,456 bytes; its config declares"):
        sisr.load_model(path)
    assert "model.weights.h5" not in opened  # refused from the archive's directory


HDF5_BOMB = """
import sys
import sisr
from sisr.saving import ModelError
try:
    sisr.load_model(sys.argv[1])
except ModelError as err:
    print("refused:", err)
""" + PRINT_PEAK


def test_keras_weights_declaring_huge_datasets_are_refused_unread(model_file, tmp_path):
    import h5py

    # A 4 GiB dataset stored as nothing but its fill value: 2 KB on disk.
    bomb_h5 = tmp_path / "bomb.h5"
    with h5py.File(bomb_h5, "w") as h5:
        h5.create_dataset("layers/head_conv/vars/0", shape=(2**30,), dtype="f4",
                          chunks=(2**20,), compression="gzip", fillvalue=0.0)
    assert bomb_h5.stat().st_size < 2**16
    path = _with_weights(model_file, tmp_path / "bomb.keras",
                         lambda archive: archive.write(bomb_h5, "model.weights.h5"))
    result = subprocess.run([sys.executable, "-c", HDF5_BOMB, str(path)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = "datasets of its model.weights.h5 hold 4,294,967,296 bytes"
    assert "refused: " in result.stdout and expected in result.stdout, result.stdout
    peak = peak_kib(result.stdout)
    assert peak < 2**20 * 2, f"peak RSS {peak} KiB: the dataset was read"  # < 2 GiB


def test_keras_weights_with_external_links_are_refused(model_file, tmp_path):
    import h5py

    linked = tmp_path / "linked.h5"
    with h5py.File(linked, "w") as h5:
        h5["layers/head_conv"] = h5py.ExternalLink("/etc/passwd", "/")
    path = _with_weights(model_file, tmp_path / "linked.keras",
                         lambda archive: archive.write(linked, "model.weights.h5"))
    with pytest.raises(ModelError, match=r"linked.keras: refused, .* link layers/head_conv"):
        sisr.load_model(path)


def test_a_config_declaring_more_weights_than_memory_is_refused(model_file, tmp_path):
    with zipfile.ZipFile(model_file) as archive:
        config = json.loads(archive.read("config.json"))
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Conv2D":
            layer["config"]["filters"] = 10**13
    path = tmp_path / "huge.keras"
    with zipfile.ZipFile(model_file) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            data = json.dumps(config) if info.filename == "config.json" else source.read(info)
            target.writestr(info, data)
    with pytest.raises(ModelError, match=r"huge.keras: refused, its config declares .* "
                                         r"weights .* more than half of this machine's memory"):
        sisr.load_model(path)


def _npz_with_header(path, shape):
    """An .npz whose only member declares `shape` float32 but holds 16 bytes."""
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    text = repr(header).encode("latin1")
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + bytes(16)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("head.0.weight.npy", member)


def test_npz_member_declaring_a_huge_shape_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "huge.npz"
    _npz_with_header(path, (10**12,))
    with pytest.raises(CheckpointError,
                       match=r"huge.npz: tensor 'head.0.weight' declares shape \(1000000000000,\)"):
        load_state_dict(path)


def _safetensors(path, header, data=b"\0" * 16):
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


@pytest.mark.parametrize("entry, message", [
    ({"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}, r"needs 12 bytes, its data has 16"),
    ({"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}, r"invalid shape \[-4\]"),
    ({"dtype": "F32", "shape": [2.5], "data_offsets": [0, 16]}, r"invalid shape \[2.5\]"),
    ({"dtype": "F32", "shape": [4], "data_offsets": ["0", "16"]}, r"invalid data_offsets"),
    ({"dtype": "F32", "shape": [4], "data_offsets": [0, 999]}, r"lies outside the file"),
    ({"dtype": "X9", "shape": [4], "data_offsets": [0, 16]}, r"unsupported dtype 'X9'"),
    ({"shape": [4]}, r"invalid safetensors entry"),
])
def test_malformed_safetensors_are_checkpoint_errors_naming_the_tensor(tmp_path, entry,
                                                                       message):
    path = _safetensors(tmp_path / "bad.safetensors", {"head.0.weight": entry})
    with pytest.raises(CheckpointError, match=r"bad.safetensors: tensor 'head.0.weight'.*"
                                              + message):
        load_state_dict(path)


def test_port_cli_reports_a_malformed_checkpoint_in_one_line(tmp_path, capsys):
    from sisr.port.cli import main

    path = tmp_path / "huge.npz"
    _npz_with_header(path, (10**12,))
    assert main([str(path), "-o", str(tmp_path / "m.keras")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "declares shape" in err[0]
    assert not (tmp_path / "m.keras").exists()


# ------------------------------------------------------------------------------ images


def _png_48_bit(path, rgb16):
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    height, width, _ = rgb16.shape
    raw = b"".join(b"\0" + rgb16[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_48_bit_png_is_reduced_with_a_note_everywhere(tmp_path, model_file, caplog):
    rgb16 = np.random.default_rng(0).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    path = tmp_path / "deep.png"
    _png_48_bit(path, rgb16)
    loaded = read_image(path)
    np.testing.assert_array_equal(loaded.array, (rgb16 >> 8).astype(np.uint8))
    assert loaded.note == "16-bit RGB reduced to 8 bits"
    assert inspect_image(path).note == "16-bit RGB reduced to 8 bits"
    np.testing.assert_array_equal(read_rgb(path), loaded.array)
    with caplog.at_level("WARNING"):
        assert up.main(["-i", str(path), "-o", str(tmp_path / "out"), "--model", model_file,
                        "-q"]) == 0
    assert any("deep.png: 16-bit RGB reduced to 8 bits" in r.getMessage()
               for r in caplog.records)


def test_image_over_the_decompression_bomb_limit_is_one_bad_file(tmp_path, monkeypatch,
                                                                 model_file, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "small.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(folder / "big.png")
    # Pillow refuses images over twice MAX_IMAGE_PIXELS with DecompressionBombError.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match=r"big.png: refused, too many pixels"):
        read_image(folder / "big.png")
    code = up.main(["-i", str(folder), "-o", str(tmp_path / "out"), "--model", model_file,
                    "-q"])
    assert code == 1  # the other image is done
    assert (tmp_path / "out" / "small_x2.png").exists()
    assert "1 failed: " in capsys.readouterr().out


# ------------------------------------------------------------------- outputs vs inputs


def test_upscale_never_writes_over_an_input_of_the_same_run(tmp_path, model_file, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(folder / "a.png")
    # A previous run's output in the input folder: upscaling the folder into itself would
    # overwrite it while it is also an input.
    Image.fromarray(np.full((12, 12, 3), 7, np.uint8)).save(folder / "a_x2.png")
    before = (folder / "a_x2.png").read_bytes()
    code = up.main(["-i", str(folder), "-o", str(folder), "--model", model_file, "--force",
                    "-q"])
    assert code == 2
    assert "would overwrite input(s) of this run" in capsys.readouterr().err
    assert (folder / "a_x2.png").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x2.png"]


def test_export_force_replaces_only_a_previous_export(tmp_path, model_file, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    code = export_module.main([model_file, "--format", "saved_model", "-o", str(precious),
                               "--force"])
    assert code == 2
    assert "is not a SavedModel folder" in capsys.readouterr().err
    assert (precious / "thesis.tex").read_text() == "years of work"
    # A previous export is replaced.
    out = tmp_path / "sm"
    assert export_module.main([model_file, "--format", "saved_model", "-o", str(out)]) == 0
    assert export_module.main([model_file, "--format", "saved_model", "-o", str(out),
                               "--force"]) == 0
    assert (out / "saved_model.pb").is_file()


@pytest.mark.optional_extra("torch")
def test_a_pickled_checkpoint_with_code_is_refused_in_one_line(tmp_path):
    torch = pytest.importorskip("torch")

    class Payload:  # an object that weights-only loading must refuse
        def __reduce__(self):
            return (print, ("this would run",))

    path = tmp_path / "evil.pt"
    torch.save({"head.0.weight": torch.zeros(2), "x": Payload()}, path)
    with pytest.raises(CheckpointError) as info:
        load_state_dict(path)
    message = str(info.value)
    assert "\n" not in message and "weights_only=False" not in message
    assert message.startswith(f"{path}: refused by torch.load(weights_only=True)")


def test_export_of_a_model_that_safe_mode_refuses_is_one_line(tmp_path, capsys):
    path = tmp_path / "evil.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(
            {"module": "os", "class_name": "system", "config": {}}))
        archive.writestr("metadata.json", "{}")
    code = export_module.main([str(path), "--format", "saved_model", "-o",
                               str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "evil.keras: Keras refused to load it in safe mode" in err[0]
    assert not (tmp_path / "out").exists()


def test_every_reader_honours_exif_orientation(tmp_path):
    from sisr.convert import convert

    # Stored 6 high, 10 wide; EXIF orientation 6 shows it 10 high, 6 wide.
    stored = np.zeros((6, 10, 3), np.uint8)
    stored[:, :5] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    source = tmp_path / "src"
    source.mkdir()
    Image.fromarray(stored).save(source / "photo.jpg", exif=exif, quality=100)
    upright = read_image(source / "photo.jpg").array
    assert upright.shape == (10, 6, 3)
    np.testing.assert_array_equal(read_rgb(source / "photo.jpg"), upright)
    assert inspect_image(source / "photo.jpg").shape == (10, 6)
    convert("downscale", str(source), str(tmp_path / "lr"), scale=2, progress=False)
    [lr] = [p for p in (tmp_path / "lr").iterdir() if p.suffix == ".png"]
    assert np.asarray(Image.open(lr)).shape == (5, 3, 3)
