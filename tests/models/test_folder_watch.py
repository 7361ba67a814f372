"""FolderWatch (#19 item 7): a cheap listing of the model folders whose token changes, after one rescan, when a
file appears, grows or goes; listed at most every `min_interval` seconds however many pages ask."""

from __future__ import annotations

import os

from webui.models.folder_watch import FolderWatch, listing_digest


def test_token_changes_after_one_rescan_when_a_file_appears_changes_or_goes(tmp_path):
    ckpts, loras = tmp_path / "Stable-diffusion", tmp_path / "Lora"
    ckpts.mkdir()
    (ckpts / "a.safetensors").write_bytes(b"a")
    now = [0.0]
    rescans: list[int] = []
    watch = FolderWatch(lambda: [ckpts, loras], lambda: rescans.append(1), min_interval=5, clock=lambda: now[0])
    first = watch.token()
    assert rescans == [] and watch.token() == first  # the first listing is the baseline: nothing to rescan
    (ckpts / "sub").mkdir()
    (ckpts / "sub" / "b.safetensors").write_bytes(b"b")
    assert watch.token() == first  # within min_interval: the folders are not listed again
    now[0] = 6
    second = watch.token()
    assert second != first and rescans == [1]
    now[0] = 12
    assert watch.token() == second and rescans == [1]  # nothing changed: no rescan
    loras.mkdir()
    (loras / "l.safetensors").write_bytes(b"l")  # a folder that was missing, then appears
    now[0] = 18
    third = watch.token()
    assert third != second and rescans == [1, 1]
    os.utime(ckpts / "a.safetensors", ns=(1, 1))  # rewritten in place: same name, new mtime
    now[0] = 24
    fourth = watch.token()
    assert fourth != third and len(rescans) == 3
    (ckpts / "sub" / "b.safetensors").unlink()
    now[0] = 30
    assert watch.token() != fourth and len(rescans) == 4


def test_a_failed_rescan_keeps_the_old_token_and_is_retried(tmp_path):
    (tmp_path / "a.ckpt").write_bytes(b"a")
    calls = []

    def rescan():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk hiccup")

    watch = FolderWatch(lambda: [tmp_path], rescan, min_interval=0)
    first = watch.token()
    (tmp_path / "b.ckpt").write_bytes(b"b")
    assert watch.token() == first and len(calls) == 1  # the pages keep their lists
    assert watch.token() != first and len(calls) == 2


def test_link_loops_are_read_once_and_the_walk_is_bounded(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x.safetensors").write_bytes(b"x")
    (tmp_path / "m" / "loop").symlink_to(tmp_path / "m")
    assert listing_digest([tmp_path / "m"]) == listing_digest([tmp_path / "m"])
    many = tmp_path / "many"
    many.mkdir()
    for i in range(30):
        (many / f"{i}.pt").write_bytes(b"")
    bounded = listing_digest([many], max_entries=10)
    (many / "29.pt").unlink()  # beyond the bound (entries are read in name order): unseen
    assert listing_digest([many], max_entries=10) == bounded
