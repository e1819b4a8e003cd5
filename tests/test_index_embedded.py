"""The embedded backend's promises: commits that cost what changed, durability through kill -9, torn
writes and a full disk (rolled back, nothing half-applied), one writer per workspace, checkpoints
that lose nothing, and migration of workspaces written by the old snapshot store."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from index_helpers import SynthVideo, library_of, pairs, unit, videos

from clipseek.errors import WorkspaceBusyError
from clipseek.index import Library, open_backend
from clipseek.index.backend import IndexWriteError
from clipseek.index.embedded import vector_log
from clipseek.index.embedded.vectors import HnswSettings

REPO = Path(__file__).resolve().parent.parent
LEGACY = REPO / "tests" / "fixtures" / "legacy-workspace-v1"


def open_library(workspace: Path, **hnsw) -> Library:
    return Library(open_backend("embedded", workspace, hnsw=HnswSettings(**hnsw)))


def snapshot(library: Library) -> tuple:
    return (library.frame_count(), sorted((r.video_id, r.paths, tuple(map(tuple, r.ranges))) for r in library.videos()))


def workspace_files(workspace: Path) -> dict[str, int]:
    return {str(p.relative_to(workspace)): p.stat().st_size for p in workspace.rglob("*") if p.is_file()}


def test_a_commit_writes_what_changed_not_the_index(tmp_path):
    """Adding a 20-frame video to a 20,000-frame index appends ~40 KB of vectors and a few SQLite pages;
    the checkpoint (graph and float16 copy, megabytes) is not touched."""
    library = open_library(tmp_path / "ws", checkpoint_min_mb=1.0, exact_below=0)
    rng = np.random.default_rng(0)
    for i in range(100):  # 100 videos x 200 frames, 64-d
        video = SynthVideo(f"big{i:03d}", shots=1, dim=64, seed=i)
        upload = video.upload()
        upload.duration_s = upload.end_s = 200.0
        upload.shots = [upload.shots[0].__class__(0.0, 200.0)]
        upload.times_s, upload.vectors = np.arange(200) + 0.5, unit(rng.normal(size=(200, 64)))
        library.index_range(upload)
    library.backend.vectors.wait_until_inserted()
    assert library.backend.vectors.checkpoint()
    before = workspace_files(tmp_path / "ws")
    checkpoint_bytes = sum(size for name, size in before.items() if name.startswith("vectors/ckpt-"))
    video = SynthVideo("small", shots=2, dim=64, seed=7)
    upload = video.upload()
    upload.times_s, upload.vectors = np.linspace(0.1, 5.9, 20), unit(rng.normal(size=(20, 64)))
    assert library.index_range(upload).status == "indexed"
    after = workspace_files(tmp_path / "ws")
    grown = {name: after.get(name, 0) - before.get(name, 0) for name in set(before) | set(after)}
    written = sum(max(0, delta) for delta in grown.values())
    assert checkpoint_bytes > 5_000_000
    assert all(after.get(name) == size for name, size in before.items() if name.startswith("vectors/ckpt-"))
    assert written < 200_000, grown  # 20 x 64 x 4 = 5 KB of vectors, plus a few 4 KB SQLite pages
    library.close()


CRASH_WRITER = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from index_helpers import SynthVideo
from clipseek.index import Library, open_backend
from clipseek.index.embedded.vectors import HnswSettings
library = Library(open_backend("embedded", {workspace!r}, hnsw=HnswSettings(checkpoint_min_mb=0.02, exact_below=0)))
for i in range(100000):
    video = SynthVideo(f"crash{{i:05d}}", shots=2, dim=32, seed=i)
    library.index_range(video.upload())
    if i % 7 == 3:
        print("deleting", f"crash{{i - 1:05d}}", flush=True)
        library.delete(f"crash{{i - 1:05d}}")
        print("deleted", f"crash{{i - 1:05d}}", flush=True)
    print("acked", video.video_id, flush=True)
"""


@pytest.mark.parametrize("kill_after_acks", [3, 40, 150])
def test_kill_9_at_any_moment_loses_nothing_that_was_acknowledged(tmp_path, kill_after_acks):
    """A writer indexes (and now and then deletes) videos, with checkpoints every ~20 KB of log; it is
    killed at a random moment after its n-th acknowledgement."""
    workspace = tmp_path / "ws"
    script = CRASH_WRITER.format(tests=str(REPO / "tests"), workspace=str(workspace))
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    lines = []
    while sum(line.startswith("acked") for line in lines) < kill_after_acks:
        line = child.stdout.readline()
        assert line, f"the writer stopped: {lines[-3:]}"
        lines.append(line)
    time.sleep(np.random.default_rng(kill_after_acks).uniform(0.0, 0.05))
    child.send_signal(signal.SIGKILL)
    rest = child.stdout.read()  # to the end, from the same buffer readline filled (communicate with a
    child.wait(timeout=30)      # timeout reads the pipe underneath it and lost what readline had read ahead)
    output = "".join(lines) + rest
    words = [line.split() for line in output.split("\n")[:-1]]  # whole lines only: the kill may cut the last
    acked = [name for what, name in words if what == "acked"]
    deleted = {name for what, name in words if what == "deleted"}
    deleting = {name for what, name in words if what == "deleting"}
    library = open_library(workspace)  # the lock of the dead writer does not block
    present = {r.video_id for r in library.videos()}
    assert set(acked) - deleting <= present, output  # (a delete cut short by the kill may or may not happen)
    assert not (deleted & present)
    assert library.frame_count() == 6 * len(present)
    for name in sorted(set(acked) - deleting)[-3:]:
        video = SynthVideo(name, shots=2, dim=32, seed=int(name[5:]))
        (record, clip), *_ = pairs(library.search(video.centres[1], top_k=1))
        assert record.video_id == name and (clip.start_s, clip.end_s) == (3.0, 6.0)
    library.close()


def test_a_torn_write_at_the_end_of_the_log_is_ignored_and_the_index_loads(tmp_path):
    library = open_library(tmp_path / "ws")
    synth = videos(3)
    library_of(synth, library)
    library.close()
    (log,) = (tmp_path / "ws" / "vectors").glob("log-*.bin")
    whole = log.stat().st_size
    with open(log, "ab") as handle:  # half of a record, as a crash mid-append leaves it
        handle.write(vector_log.encode_record(np.array([999]), np.ones((1, 32), dtype=np.float32))[:40])
    library = open_library(tmp_path / "ws")
    assert library.frame_count() == 36
    (record, _), *_ = pairs(library.search(synth[2].centres[0], top_k=1))
    assert record.video_id == "video002"
    library.index_range(SynthVideo("after", seed=5).upload())
    library.close()
    assert log.stat().st_size > whole  # the torn bytes were cut off before appending again
    library = open_library(tmp_path / "ws")
    assert library.frame_count() == 48
    library.close()


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device (simulated)")


def test_a_full_disk_while_logging_vectors_rolls_the_change_back(tmp_path, monkeypatch):
    library = open_library(tmp_path / "ws")
    library_of(videos(2), library)
    before, files = snapshot(library), workspace_files(tmp_path / "ws")
    monkeypatch.setattr(vector_log.os, "fsync", disk_full)
    with pytest.raises(IndexWriteError, match="No space left.*nothing of this request was applied"):
        library.index_range(SynthVideo("lost", seed=9).upload())
    monkeypatch.undo()
    assert snapshot(library) == before  # not in memory, not searchable
    assert all(r.video_id != "lost" for r, _ in pairs(library.search(SynthVideo("lost", seed=9).centres[0], top_k=3)))
    assert workspace_files(tmp_path / "ws").get("vectors/log-000001.bin") == files["vectors/log-000001.bin"]
    library.close()
    library = open_library(tmp_path / "ws")
    assert snapshot(library) == before
    assert library.index_range(SynthVideo("lost", seed=9).upload()).status == "indexed"  # space again: works
    library.close()


def test_a_full_database_rolls_the_change_back(tmp_path):
    library = open_library(tmp_path / "ws")
    library_of(videos(2), library)
    before = snapshot(library)
    log = tmp_path / "ws" / "vectors" / "log-000001.bin"
    log_size = log.stat().st_size
    db = library.backend.catalog.db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite answers SQLITE_FULL, as on a full disk
    with pytest.raises(IndexWriteError, match="full"):
        library.index_range(SynthVideo("toolarge", shots=1000, seed=3).upload())
    assert snapshot(library) == before and log.stat().st_size == log_size  # the logged vectors were cut off
    library.close()
    library = open_library(tmp_path / "ws")
    assert snapshot(library) == before
    library.close()


def test_a_delete_that_cannot_be_written_is_not_applied(tmp_path, monkeypatch):
    import sqlite3

    library = open_library(tmp_path / "ws")
    library_of(videos(2), library)
    before = snapshot(library)

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(library.backend.catalog, "write", full)
    with pytest.raises(IndexWriteError, match="full"):
        library.delete("video000")
    monkeypatch.undo()
    assert snapshot(library) == before  # still listed, still searchable
    (record, _), *_ = pairs(library.search(videos(1)[0].centres[0], top_k=1))
    assert record.video_id == "video000"
    library.close()
    library = open_library(tmp_path / "ws")
    assert snapshot(library) == before
    library.close()


def test_a_size_limited_disk_fails_cleanly_and_loses_nothing_acknowledged(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc})")
    try:
        library = open_library(mount / "ws", checkpoint_min_mb=0.05)
        acked, failures = [], []
        for i in range(400):
            video = SynthVideo(f"fill{i:04d}", shots=3, dim=64, seed=i)
            try:
                library.index_range(video.upload())
                acked.append(video.video_id)
            except IndexWriteError as exc:
                failures.append(str(exc))
            if len(failures) >= 3:
                break
        assert failures and acked
        present = {r.video_id for r in library.videos()}
        assert present == set(acked)
        library.close()
        library = open_library(mount / "ws")
        assert {r.video_id for r in library.videos()} == set(acked)
        assert library.frame_count() == 9 * len(acked)
        assert not list((mount / "ws").rglob("*.tmp"))
        library.close()
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_second_writer_is_refused_and_a_dead_one_does_not_block(tmp_path):
    library = open_library(tmp_path / "ws")
    with pytest.raises(WorkspaceBusyError, match=f"in use by pid {os.getpid()}"):
        open_library(tmp_path / "ws")
    library.close()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, 'tests');"
        "from clipseek.index import open_backend; b = open_backend('embedded', sys.argv[1]);"
        "print('open', flush=True); time.sleep(60)"), str(tmp_path / "ws")], stdout=subprocess.PIPE, text=True,
        cwd=REPO)
    assert holder.stdout.readline().strip() == "open"
    with pytest.raises(WorkspaceBusyError, match=f"pid {holder.pid}"):
        open_library(tmp_path / "ws")
    holder.kill()
    holder.wait(timeout=10)
    open_library(tmp_path / "ws").close()


def test_checkpoints_forget_the_log_they_cover_and_lose_nothing(tmp_path, monkeypatch):
    workspace = tmp_path / "ws"
    library = open_library(workspace, checkpoint_min_mb=0.01, exact_below=0)
    synth = videos(40)
    library_of(synth[:20], library)
    library.backend.vectors.wait_until_inserted()
    assert library.backend.vectors.checkpoint()
    logs_before = sorted(p.name for p in (workspace / "vectors").glob("log-*.bin"))
    library_of(synth[20:30], library)
    library.backend.vectors.wait_until_inserted()
    monkeypatch.setattr(np.lib.format, "open_memmap", disk_full)  # the next checkpoint fails: nothing lost
    assert not library.backend.vectors.checkpoint()
    monkeypatch.undo()
    assert not list((workspace / "vectors").glob("*.tmp"))
    library_of(synth[30:], library)
    for video in synth[::7]:
        library.delete(video.video_id)
    expected = snapshot(library)
    library.backend.vectors.close(checkpoint=False)  # as if killed: the log after the checkpoint is replayed
    library.backend.catalog.close()
    library.backend._lock.release()
    library = open_library(workspace, exact_below=0)
    assert snapshot(library) == expected
    for video in synth[1::7]:
        (record, clip), *_ = pairs(library.search(video.centres[2], top_k=1))
        assert (record.video_id, clip.start_s) == (video.video_id, 6.0)
    library.backend.vectors.wait_until_inserted()
    assert library.backend.vectors.checkpoint()
    assert not set(logs_before) & {p.name for p in (workspace / "vectors").glob("log-*.bin")}
    library.close()
    library = open_library(workspace)
    assert snapshot(library) == expected
    library.close()


def test_searches_go_on_while_videos_are_indexed_and_checkpoints_written(tmp_path):
    library = open_library(tmp_path / "ws", checkpoint_min_mb=0.02, exact_below=0)
    synth = videos(80, shots=2)
    library_of(synth[:10], library)
    errors: list[BaseException] = []

    def writer():
        try:
            library_of(synth[10:], library)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    searches = 0
    while thread.is_alive() or searches < 20:
        for record, clip in pairs(library.search(synth[searches % 10].centres[1], top_k=5)):
            assert 0.0 <= clip.start_s < clip.end_s <= record.duration_s
        searches += 1
    thread.join()
    assert not errors and searches >= 20
    library.backend.vectors.wait_until_inserted()
    for video in synth[::9]:
        (record, clip), *_ = pairs(library.search(video.centres[1], top_k=1))
        assert (record.video_id, clip.start_s, clip.end_s) == (video.video_id, 3.0, 6.0)
    library.close()


def test_a_workspace_of_the_old_snapshot_store_is_migrated_with_nothing_lost(tmp_path):
    expected = json.loads((LEGACY / "expected.json").read_text())
    workspace = tmp_path / "ws"
    shutil.copytree(LEGACY / "workspace", workspace)
    library = open_library(workspace)
    assert (workspace / "FORMAT").is_file() and not (workspace / "CURRENT").exists()
    assert not list(workspace.glob("snap-*"))
    assert library.frame_count() == expected["num_frames"]
    assert library.model.name == expected["model"] and library.model.dim == expected["dim"]
    for video_id, want in expected["videos"].items():
        record = library.find(video_id)[0]
        assert record.path == want["path"] and record.complete == want["complete"]
        assert [[s.start_s, s.end_s] for s in record.shots] == want["shots"]
        assert record.ranges == want["ranges"] and library.frame_count(video_id) == want["frames"]
    for case in expected["queries"]:
        got = pairs(library.search(np.array(case["query"], dtype=np.float32), top_k=3))
        assert [[r.video_id, c.start_s, c.end_s] for r, c in got] == [e[:3] for e in case["expected"]]
        assert [c.score for _, c in got] == pytest.approx([e[3] for e in case["expected"]], abs=2e-3)
    video = SynthVideo("aftermigration", dim=expected["dim"])
    library.index_range(video.upload(model=expected["model"]))
    library.close()
    library = open_library(workspace)
    assert library.frame_count() == expected["num_frames"] + 12
    library.close()


def test_a_migration_cut_short_starts_again_from_the_old_snapshot(tmp_path, monkeypatch):
    from clipseek.index import migrate

    workspace = tmp_path / "ws"
    shutil.copytree(LEGACY / "workspace", workspace)
    real = migrate.write_atomically
    monkeypatch.setattr(migrate, "write_atomically", disk_full)  # dies before FORMAT is written
    with pytest.raises(OSError):
        open_library(workspace)
    monkeypatch.setattr(migrate, "write_atomically", real)
    assert (workspace / "CURRENT").is_file()
    library = open_library(workspace)
    assert library.frame_count() == json.loads((LEGACY / "expected.json").read_text())["num_frames"]
    library.close()


def test_float16_vectors_read_as_float32_by_table_give_numpys_values():
    """The search reads the float16 copy through a lookup table (numpy's cast is slow): every bit
    pattern gives what ``astype(np.float32)`` gives, NaNs and infinities included, in any shape."""
    from clipseek.index.embedded.vectors import as_float32

    every = np.arange(2**16, dtype=np.uint16).view(np.float16)
    assert np.array_equal(as_float32(every), every.astype(np.float32), equal_nan=True)
    assert as_float32(every).dtype == np.float32
    rows = np.random.default_rng(3).standard_normal((7, 512)).astype(np.float16)
    assert np.array_equal(as_float32(rows[::2]), rows[::2].astype(np.float32))  # a strided view too
    assert as_float32(rows[::2]).shape == (4, 512)
