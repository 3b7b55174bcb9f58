"""python -m sisr.convert: numpy caches, JPEG copies, MATLAB-bicubic LR; restartability."""

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from sisr.convert import convert, main
from sisr.data.manifest import MANIFEST_NAME, Manifest
from sisr.imresize import imresize


def _image(seed, shape=(36, 48)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, shape + (3,), dtype=np.uint8)


def _tree(root, count=3):
    """root/a/000i.png and root/b/c/000i.png, plus a stray text file."""
    images = {}
    for i in range(count):
        for sub in ("a", os.path.join("b", "c")):
            rel = os.path.join(sub, f"{i:04d}.png")
            path = os.path.join(root, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            images[rel] = _image(i + 10 * len(sub))
            Image.fromarray(images[rel]).save(path)
    with open(os.path.join(root, "a", "notes.txt"), "w") as f:
        f.write("not an image")
    return images


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, names in os.walk(root) for f in names)


def test_numpy_conversion_mirrors_the_tree(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    images = _tree(src)
    result = convert("numpy", src, dst, progress=False)
    assert result.ok and result.converted == len(images) and result.up_to_date == 0
    assert [os.path.basename(p) for p in result.ignored] == ["notes.txt"]
    expected = sorted([os.path.splitext(r)[0] + ".npy" for r in images] + [MANIFEST_NAME])
    assert _files(dst) == expected
    for rel, image in images.items():
        array = np.load(os.path.join(dst, os.path.splitext(rel)[0] + ".npy"))
        assert array.dtype == np.uint8
        np.testing.assert_array_equal(array, image)
    with open(os.path.join(dst, MANIFEST_NAME)) as f:
        entry = json.load(f)["entries"][os.path.join("a", "0001.npy")]
    assert entry["shape"] == [36, 48, 3] and entry["kind"] == "numpy"
    assert entry["source"] == os.path.join("a", "0001.png")


def test_rerun_skips_current_outputs(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    images = _tree(src)
    convert("numpy", src, dst, progress=False)
    stamps = {p: os.stat(os.path.join(dst, p)).st_mtime_ns for p in _files(dst)
              if p.endswith(".npy")}
    result = convert("numpy", src, dst, progress=False)
    assert result.converted == 0 and result.up_to_date == len(images)
    assert stamps == {p: os.stat(os.path.join(dst, p)).st_mtime_ns for p in stamps}


def test_restart_after_a_crash_rebuilds_partial_outputs(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    images = _tree(src)
    convert("numpy", src, dst, progress=False)
    # Simulate a crash: a truncated temp file, a truncated output, and an output written
    # after the manifest entered it as pending but before it was recorded as done.
    target = os.path.join(dst, "a", "0001.npy")
    temp = os.path.join(dst, "a", ".tmp-x1y2z3.npy")
    with open(target, "rb") as f:
        data = f.read()
    with open(temp, "wb") as f:
        f.write(data[: len(data) // 2])
    with open(target, "wb") as f:
        f.write(data[: len(data) // 3])
    manifest_path = os.path.join(dst, MANIFEST_NAME)
    with open(manifest_path) as f:
        manifest = json.load(f)
    lost = os.path.join("b", "c", "0000.npy")
    manifest["entries"][lost] = {"source": os.path.join("b", "c", "0000.png"),
                                 "kind": "numpy", "params": {}, "pending": True}
    with open(os.path.join(dst, lost), "wb") as f:
        f.write(b"\x93NUMPY garbage")
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)

    assert main(["numpy", "-i", src, "-o", dst, "-q"]) == 0
    assert not os.path.exists(temp)
    assert not any(name.endswith(".tmp") for name in _files(dst))
    for rel, image in images.items():
        np.testing.assert_array_equal(np.load(os.path.join(dst, os.path.splitext(rel)[0]
                                                           + ".npy")), image)
    result = convert("numpy", src, dst, progress=False)
    assert result.converted == 0 and result.up_to_date == len(images)


def test_a_changed_source_is_rebuilt(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    _tree(src)
    convert("numpy", src, dst, progress=False)
    Image.fromarray(_image(99)).save(os.path.join(src, "a", "0002.png"))
    result = convert("numpy", src, dst, progress=False)
    assert result.converted == 1
    np.testing.assert_array_equal(np.load(os.path.join(dst, "a", "0002.npy")), _image(99))


def test_an_unreadable_manifest_means_a_full_rebuild(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    images = _tree(src)
    convert("numpy", src, dst, progress=False)
    with open(os.path.join(dst, MANIFEST_NAME), "w") as f:
        f.write('{"format": "sisr-conv')
    assert convert("numpy", src, dst, progress=False, force=True).converted == len(images)


def test_jpeg_copies_match_pillow_at_that_quality(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    images = _tree(src, count=1)
    assert main(["jpeg", "--quality", "90", "-i", src, "-o", dst, "-q"]) == 0
    for rel, image in images.items():
        out = np.asarray(Image.open(os.path.join(dst, os.path.splitext(rel)[0] + ".jpg")))
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=90)
        np.testing.assert_array_equal(out, np.asarray(Image.open(buffer)))
    # Another quality in the same output: every file is redone, none is skipped.
    result = convert("jpeg", src, dst, quality=20, progress=False)
    assert result.converted == len(images) and result.up_to_date == 0


def test_downscale_uses_the_matlab_bicubic(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    os.makedirs(src)
    hr = _image(5, (50, 61))
    Image.fromarray(hr).save(os.path.join(src, "baby.png"))
    assert main(["downscale", "--scale", "4", "--suffix", "x4", "-i", src, "-o", dst,
                 "-q"]) == 0
    lr = np.asarray(Image.open(os.path.join(dst, "babyx4.png")))
    np.testing.assert_array_equal(lr, imresize(hr[:48, :60], 0.25))
    # The command that rebuilds it, as verify and the datasets advise, has every option.
    assert Manifest.load(dst).command() == (f"python -m sisr.convert downscale --scale 4 "
                                            f"--suffix x4 -i {src} -o {dst}")


def test_converting_a_bad_tree_names_the_bad_files(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _tree(str(src), count=2)
    good = (src / "a" / "0000.png").read_bytes()
    (src / "a" / "cut.png").write_bytes(good[: len(good) // 2])
    (src / "a" / "fake.jpg").write_text("not a jpeg")
    assert main(["numpy", "-i", str(src), "-o", str(dst), "-q"]) == 1
    err = capsys.readouterr().err
    assert "cut.png" in err and "fake.jpg" in err
    # The good files are converted, the bad ones leave nothing behind.
    names = _files(str(dst))
    assert os.path.join("a", "0001.npy") in names
    assert not any(n.startswith(os.path.join("a", "cut")) or "fake" in n or n.endswith(".tmp")
                   for n in names)


def test_grayscale_and_rgba_inputs_are_converted_with_a_warning(tmp_path, caplog):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    rgb = _image(1)
    Image.fromarray(rgb).convert("L").save(src / "gray.png")
    Image.fromarray(rgb).convert("RGBA").save(src / "alpha.png")
    result = convert("numpy", str(src), str(dst), progress=False)
    assert result.ok
    gray = np.load(dst / "gray.npy")
    assert gray.shape == (36, 48, 3) and np.all(gray[..., 0] == gray[..., 2])
    np.testing.assert_array_equal(np.load(dst / "alpha.npy"), rgb)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "gray.png: grayscale converted to RGB" in messages
    assert "alpha.png: alpha channel dropped" in messages


@pytest.mark.parametrize(
    "argv, message",
    [
        (["numpy", "-i", "{tmp}/missing", "-o", "{tmp}/out"], "missing: input folder not found"),
        (["numpy", "-i", "{tmp}/empty", "-o", "{tmp}/out"], "empty: no images"),
        (["numpy", "-i", "{tmp}/empty", "-o", "{tmp}/empty"], "must differ"),
        (["jpeg", "--quality", "0", "-i", "{tmp}/empty", "-o", "{tmp}/out"], "quality"),
        (["downscale", "--scale", "1", "-i", "{tmp}/empty", "-o", "{tmp}/out"], "scale"),
    ],
)
def test_cli_bad_arguments_exit_non_zero(tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 2  # refused before any work
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_usage_errors():
    with pytest.raises(SystemExit) as exit_info:
        main(["jpeg", "-i", "a", "-o", "b"])  # --quality is required
    assert exit_info.value.code == 2


def test_output_inside_the_input_is_not_walked(tmp_path):
    src = tmp_path / "src"
    images = _tree(str(src), count=1)
    dst = src / "cache"
    convert("numpy", str(src), str(dst), progress=False)
    result = convert("numpy", str(src), str(dst), progress=False)
    assert result.up_to_date == len(images) and result.converted == 0


def test_progress_bar_is_shown_on_request(tmp_path, capsys):
    src = tmp_path / "src"
    _tree(str(src), count=1)
    convert("numpy", str(src), str(tmp_path / "dst"), progress=True)
    assert "2/2" in capsys.readouterr().err


# --- files sisr did not write, colliding inputs, bombs, checksums -------------------------


def test_files_sisr_did_not_write_are_never_overwritten(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    Image.fromarray(_image(1, (40, 40))).save(src / "good.png")
    Image.fromarray(_image(2, (40, 40))).save(src / "other.png")
    mine = _image(3, (10, 10))
    Image.fromarray(mine).save(dst / "good.png")  # the user's own file, same name
    before = (dst / "good.png").read_bytes()
    assert main(["downscale", "--scale", "2", "-i", str(src), "-o", str(dst), "-q"]) == 2
    err = capsys.readouterr().err
    assert "good.png" in err and "--force" in err
    # Refused before any work: the user's file is intact and nothing else was written.
    assert (dst / "good.png").read_bytes() == before
    assert _files(str(dst)) == ["good.png"]
    assert main(["downscale", "--scale", "2", "-i", str(src), "-o", str(dst), "-q",
                 "--force"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(dst / "good.png")),
                                  imresize(_image(1, (40, 40)), 0.5))
    # Once written by sisr, the file is sisr's: a later run may rebuild it without --force.
    Image.fromarray(_image(4, (40, 40))).save(src / "good.png")
    assert main(["downscale", "--scale", "2", "-i", str(src), "-o", str(dst), "-q"]) == 0


def test_an_unreadable_manifest_needs_force(tmp_path, capsys):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    _tree(src, count=1)
    convert("numpy", src, dst, progress=False)
    with open(os.path.join(dst, MANIFEST_NAME), "w") as f:
        f.write('{"format": "sisr-conv')
    assert main(["numpy", "-i", src, "-o", dst, "-q"]) == 2
    assert MANIFEST_NAME in capsys.readouterr().err
    assert main(["numpy", "-i", src, "-o", dst, "-q", "--force"]) == 0


def test_two_inputs_for_one_output_are_refused(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    Image.fromarray(_image(1)).save(src / "x.png")
    Image.fromarray(_image(2)).save(src / "x.jpg")
    Image.fromarray(_image(3)).save(src / "y.png")
    assert main(["numpy", "-i", str(src), "-o", str(dst), "-q"]) == 2
    err = capsys.readouterr().err
    assert "x.png" in err and "x.jpg" in err and "x.npy" in err
    assert not dst.exists() or _files(str(dst)) == []


def test_a_decompression_bomb_is_one_bad_file(tmp_path, capsys, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    Image.fromarray(_image(1, (20, 20))).save(src / "a.png")
    Image.fromarray(_image(2, (60, 60))).save(src / "bomb.png")
    Image.fromarray(_image(3, (20, 20))).save(src / "c.png")
    # Pillow refuses images over twice this many pixels: 3600 > 2 * 1000 >= 400.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert main(["numpy", "-i", str(src), "-o", str(dst), "-q"]) == 1
    err = capsys.readouterr().err
    assert "bomb.png" in err and "decompression-bomb" in err and "Traceback" not in err
    assert _files(str(dst)) == ["a.npy", "c.npy", MANIFEST_NAME]


def _sha256(path):
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _alter_pixels(path, keep_mtime=False):
    """Flips the bits of one pixel byte of a .npy file in place (size unchanged)."""
    stat = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        byte = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0xFF]))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_outputs_are_recorded_with_checksums_and_verified(tmp_path, capsys):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    images = _tree(src)
    convert("numpy", src, dst, progress=False)
    with open(os.path.join(dst, MANIFEST_NAME)) as f:
        entries = json.load(f)["entries"]
    assert len(entries) == len(images)
    for rel, entry in entries.items():
        assert entry["sha256"] == _sha256(os.path.join(dst, rel))
    assert main(["verify", "-o", dst]) == 0
    assert f"{len(images)} verified" in capsys.readouterr().out
    # Pixels altered, size intact, even the time put back: verify finds it.
    altered = os.path.join(dst, "b", "c", "0001.npy")
    _alter_pixels(altered, keep_mtime=True)
    assert main(["verify", "-o", dst]) == 1
    captured = capsys.readouterr()
    assert "0001.npy" in captured.err and "checksum" in captured.err
    assert "1 mismatched" in captured.out
    # Its advice works: delete the file and run the command it names.
    assert f"python -m sisr.convert numpy -i {src} -o {dst}" in captured.err
    os.remove(altered)
    assert main(["numpy", "-i", src, "-o", dst, "-q"]) == 0
    assert main(["verify", "-o", dst]) == 0
    # A plain edit changes the time: the next conversion re-hashes and rebuilds it.
    _alter_pixels(os.path.join(dst, "a", "0002.npy"))
    result = convert("numpy", src, dst, progress=False)
    assert result.converted == 1 and result.up_to_date == len(images) - 1
    np.testing.assert_array_equal(np.load(os.path.join(dst, "a", "0002.npy")),
                                  images[os.path.join("a", "0002.png")])


def test_old_manifests_without_checksums_keep_working(tmp_path, capsys):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    images = _tree(src, count=1)
    convert("numpy", src, dst, progress=False)
    manifest_path = os.path.join(dst, MANIFEST_NAME)
    with open(manifest_path) as f:
        manifest = json.load(f)
    for entry in manifest["entries"].values():  # as written by sisr before checksums
        entry.pop("sha256")
        entry.pop("mtime_ns")
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    assert main(["verify", "-o", dst]) == 0
    assert f"{len(images)} without checksum" in capsys.readouterr().out
    # Re-running the conversion adds the checksums without converting anything again.
    result = convert("numpy", src, dst, progress=False)
    assert result.converted == 0 and result.up_to_date == len(images)
    with open(manifest_path) as f:
        entries = json.load(f)["entries"]
    assert all(e["sha256"] == _sha256(os.path.join(dst, rel)) for rel, e in entries.items())
    assert main(["verify", "-o", dst]) == 0


def test_unrecorded_files_in_the_output_are_named(tmp_path, caplog):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    _tree(src, count=1)
    convert("numpy", src, dst, progress=False)
    stray = os.path.join(dst, "a", "0007.npy")
    np.save(stray, _image(7))
    assert main(["verify", "-o", dst]) == 1
    result = convert("numpy", src, dst, progress=False)
    assert result.ok and result.converted == 0
    assert any("0007.npy" in r.getMessage() and "not recorded" in r.getMessage()
               for r in caplog.records)


def test_a_source_inside_the_output_is_not_called_unrecorded(tmp_path, caplog):
    dst = tmp_path / "dst"
    src = dst / "originals"
    _tree(str(src), count=1)
    result = convert("numpy", str(src), str(dst), progress=False)
    assert result.ok and result.converted == 2 and result.unrecorded == []
    assert not any("not recorded" in r.getMessage() for r in caplog.records)
    assert main(["verify", "-o", str(dst)]) == 0


def test_another_conversion_inside_the_output_is_not_called_unrecorded(tmp_path, caplog):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    _tree(src, count=1)
    convert("numpy", src, dst, progress=False)
    convert("jpeg", os.path.join(src, "a"), os.path.join(dst, "jpeg_90"), quality=90,
            progress=False)
    assert main(["verify", "-o", dst]) == 0
    assert convert("numpy", src, dst, progress=False).unrecorded == []
