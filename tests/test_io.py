"""Files written by edgedistill keep the user's umask (they used to be 0600 whatever the umask)."""

from __future__ import annotations

import os
import stat

import pytest

from edgedistill.io import atomic_path, write_json, write_text


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path, mask):
    before = os.umask(mask)
    try:
        a = write_text(tmp_path / "a.txt", "hello")
        b = write_json(tmp_path / "sub" / "b.json", {"x": 1})
        with atomic_path(tmp_path / "c.bin") as tmp:
            tmp.write_bytes(b"\0")
        plain = tmp_path / "plain.txt"
        plain.write_text("what open() gives")  # the reference: a file created the ordinary way
    finally:
        os.umask(before)
    want = stat.S_IMODE(plain.stat().st_mode)
    assert want == 0o666 & ~mask
    for f in (a, b, tmp_path / "c.bin"):
        assert stat.S_IMODE(f.stat().st_mode) == want, f


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "keep.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
