"""sisr.fileio: the one atomic writer that every file sisr writes goes through."""

import os
import stat

import numpy as np
import pytest

from sisr.convert import convert
from sisr.fileio import atomic_output, atomic_write_json, is_temp_name
from sisr.imageio import write_image


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_files_get_the_permissions_of_a_plain_open(tmp_path, umask_022):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert _mode(tmp_path / "a.json") == 0o644
    # The convert outputs and its manifest go through the same writer.
    src = tmp_path / "src"
    write_image(src / "img.png", np.zeros((8, 8, 3), np.uint8))
    convert("numpy", str(src), str(tmp_path / "dst"), progress=False)
    written = sorted(os.listdir(tmp_path / "dst"))
    assert "img.npy" in written and len(written) == 2  # + the manifest
    for name in written:
        assert _mode(tmp_path / "dst" / name) == 0o644, name


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["keep.txt"]


def test_no_overwrite_refuses_before_and_after_writing(tmp_path):
    target = tmp_path / "out.png"
    target.write_text("user's file")
    with pytest.raises(FileExistsError, match="out.png exists"):
        with atomic_output(target, overwrite=False):
            pass
    other = tmp_path / "late.png"
    with pytest.raises(FileExistsError, match="late.png exists"):
        with atomic_output(other, overwrite=False) as tmp:
            assert is_temp_name(tmp) and tmp.endswith(".png")
            other.write_text("appeared meanwhile")
    assert other.read_text() == "appeared meanwhile"
    assert target.read_text() == "user's file"
    assert sorted(os.listdir(tmp_path)) == ["late.png", "out.png"]


def test_directory_outputs_replace_a_previous_directory(tmp_path):
    target = tmp_path / "export"
    for content in ("first", "second"):
        with atomic_output(target, directory=True) as tmp:
            assert not os.path.exists(tmp)
            os.makedirs(tmp)
            with open(os.path.join(tmp, "file.txt"), "w") as f:
                f.write(content)
        assert (target / "file.txt").read_text() == content
    assert os.listdir(tmp_path) == ["export"]
