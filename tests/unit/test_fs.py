"""``safe_subdir``/``refuse_symlink``: qpipe's own folders are never reached through a link."""

from __future__ import annotations

import pytest

from qpipe._fs import refuse_symlink, safe_subdir
from qpipe.errors import PathSafetyError, StoreError


def test_safe_subdir_creates_a_plain_folder_once(tmp_path):
    made = safe_subdir(tmp_path, "sweeps")
    assert made == tmp_path / "sweeps" and made.is_dir() and not made.is_symlink()
    (made / "keep").write_text("x")
    assert safe_subdir(tmp_path, "sweeps") == made and (made / "keep").exists()


@pytest.mark.parametrize("target", ["dir", "file", "dangling"])
def test_safe_subdir_refuses_a_symlink_and_writes_nothing_through_it(tmp_path, target):
    outside = tmp_path / "outside"
    if target == "dir":
        outside.mkdir()
    elif target == "file":
        outside.write_text("precious")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "sweeps").symlink_to(outside)
    with pytest.raises(PathSafetyError, match=r"`.*/root/sweeps` is a symlink"):
        safe_subdir(tmp_path / "root", "sweeps", "sweeps folder")
    if target == "dir":
        assert list(outside.iterdir()) == []
    elif target == "file":
        assert outside.read_text() == "precious"
    else:
        assert not outside.exists()


def test_safe_subdir_refuses_a_file_and_names_that_are_not_plain(tmp_path):
    (tmp_path / "store").write_text("not a folder")
    with pytest.raises(PathSafetyError, match="is not a folder"):
        safe_subdir(tmp_path, "store")
    for bad in ("", ".", "..", "a/b", "a\\b"):
        with pytest.raises(PathSafetyError, match="not a plain folder name"):
            safe_subdir(tmp_path, bad)


def test_safe_subdir_reports_an_unwritable_root_as_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="cannot create folder"):
        safe_subdir(tmp_path / "missing" / "deeper", "x")


def test_refuse_symlink_checks_only_the_last_component(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    refuse_symlink(tmp_path / "link" / "inside", "store")  # a linked parent is the user's choice
    with pytest.raises(PathSafetyError, match="never writes through a link"):
        refuse_symlink(tmp_path / "link", "store")
