"""Workdirs that never lose records: one run at a time, damaged shards redone, nothing left
behind by a killed driver, labels that stay folder names, I/O errors that name their file,
and an ``inspect`` that prints no terminal escapes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from test_engine import assert_ledger_invariant, ledger_rows, make_pipeline

from reasonmill import Pipeline
from reasonmill.config import ConfigError, load_pipeline
from reasonmill.engine.leftovers import sweep_box_dirs, sweep_semaphores, sweep_tmp_files
from reasonmill.engine.lock import WorkdirBusy, WorkdirLock
from reasonmill.engine.workdir import DamagedShard, StageDir, read_parquet
from reasonmill.records import to_table

REPO = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
ENV.update(PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO / 'tests'}", COLUMNS="200")


def cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reasonmill.cli", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout
    )


def squeeze(text: str) -> str:
    """``text`` without whitespace: rich wraps long messages, even inside a path."""
    return "".join(text.split())


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- the lock -------------------------------------------------------------------------


def test_two_concurrent_runs_give_one_refusal_and_one_correct_output(tmp_path):
    log = tmp_path / "log.txt"
    path = make_pipeline(tmp_path, ["dedup.exact", {"test.slow": {"log": str(log), "sleep": 0.5}}], n=60)
    cmd = [sys.executable, "-m", "reasonmill.cli", "run", str(path), "--quiet", "--workers", "1"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [(p, *p.communicate(timeout=120)) for p in procs]
    codes = sorted(p.returncode for p, _, _ in outs)
    assert codes == [0, 1], [(p.returncode, err[-2000:]) for p, _, err in outs]
    (winner, _, _), (loser, _, loser_err) = sorted(outs, key=lambda o: o[0].returncode)
    flat = squeeze(loser_err)
    assert squeeze(f"workdir {tmp_path / 'work'} is in use by another run: pid {winner.pid} on {socket.gethostname()}") in flat
    assert squeeze(f"run {path} --quiet") in flat  # the holder's command
    work = tmp_path / "work"
    assert_ledger_invariant(work, 60)
    assert len(log.read_text().splitlines()) == 6  # every shard of the slow stage ran exactly once
    produced = (tmp_path / "out" / "am.jsonl").read_bytes()
    assert len(produced.splitlines()) == 49  # 60 problems, 11 exact duplicates

    again = cli("run", str(path), "--quiet", "--fresh", "--workers", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "out" / "am.jsonl").read_bytes() == produced  # same as an undisturbed run


def test_a_held_workdir_is_refused_at_once_naming_the_holder_and_freed_after(tmp_path):
    path = make_pipeline(tmp_path, ["dedup.exact"])
    work = tmp_path / "work"
    with WorkdirLock(work):
        start = time.monotonic()
        with pytest.raises(WorkdirBusy) as exc:
            Pipeline.from_yaml(path).run()
        assert time.monotonic() - start < 2
        assert f"pid {os.getpid()} on {socket.gethostname()}" in str(exc.value) and "started 20" in str(exc.value)
        assert not (work / "00-ingest").exists()  # nothing was touched
    result = Pipeline.from_yaml(path).run()
    assert result.stages[-1].kept == 41
    assert (work / ".lock").read_text() == ""  # released, no stale holder


def test_a_lock_file_planted_as_a_symlink_is_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / ".lock").symlink_to(victim)
    with pytest.raises(OSError):
        with WorkdirLock(tmp_path / "work"):
            pass
    assert victim.read_text() == "keep me"


def test_the_ray_engine_takes_the_lock_before_joining_ray(tmp_path):
    ray = pytest.importorskip("ray")
    from reasonmill.engine.ray import RayEngine

    path = make_pipeline(tmp_path, ["dedup.exact"])
    with WorkdirLock(tmp_path / "work"):
        with pytest.raises(WorkdirBusy):
            RayEngine(load_pipeline(path), tmp_path / "work", num_cpus=1).run()
    assert not ray.is_initialized()


# --- damaged shards -------------------------------------------------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_parquet_shard_of_a_completed_stage_is_redone_on_resume(tmp_path):
    log = tmp_path / "log.txt"
    path = make_pipeline(tmp_path, ["dedup.exact", {"test.slow": {"log": str(log)}}])
    Pipeline.from_yaml(path).run()
    work = tmp_path / "work"
    export = (tmp_path / "out" / "am.jsonl").read_bytes()
    dedup_shard = work / "01-dedup.exact" / "part-00002.parquet"
    ingest_shard = work / "00-ingest" / "part-00003.parquet"
    before = {p: pq.read_table(p) for p in (dedup_shard, ingest_shard)}
    untouched = work / "02-test.slow" / "part-00002.parquet"
    mtime = untouched.stat().st_mtime_ns
    _truncate(dedup_shard)
    _truncate(ingest_shard)
    _truncate(work / "01-dedup.exact" / "index.pkl")  # rebuilt from the ingest shards

    result = Pipeline.from_yaml(path).run()
    notes = "\n".join(result.notes)
    assert f"{dedup_shard}:" in notes and f"{ingest_shard}:" in notes and "truncated" in notes
    for p, table in before.items():
        assert pq.read_table(p).equals(table)  # redone, the same shard
    assert untouched.stat().st_mtime_ns == mtime  # later stages kept
    assert len(log.read_text().splitlines()) == 5  # the slow stage did not run again
    assert (tmp_path / "out" / "am.jsonl").read_bytes() == export
    assert_ledger_invariant(work, 50)
    assert json.loads((work / "summary.json").read_text())["notes"] == result.notes


def test_a_changed_shard_is_caught_by_its_checksum_and_redone(tmp_path):
    log = tmp_path / "log.txt"
    path = make_pipeline(tmp_path, ["dedup.exact", {"test.slow": {"log": str(log)}}])
    Pipeline.from_yaml(path).run()
    work = tmp_path / "work"
    shard = work / "01-dedup.exact" / "part-00001.parquet"
    table = pq.read_table(shard)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    shard.write_bytes(bytes(data))
    cfg = yaml.safe_load(path.read_text())
    cfg["stages"][1]["test.slow"]["drop_suffix"] = "0"  # the slow stage re-reads every dedup shard
    path.write_text(yaml.safe_dump(cfg))

    result = Pipeline.from_yaml(path).run()
    assert any(f"damaged shard {shard}: its checksum does not match" in n for n in result.notes), result.notes
    assert pq.read_table(shard).equals(table)
    assert_ledger_invariant(work, 50)
    assert result.stages[2].records_in == 41


def test_a_truncated_ledger_shard_is_reported_by_inspect_and_redone_by_run(tmp_path):
    path = make_pipeline(tmp_path, ["dedup.exact"])
    Pipeline.from_yaml(path).run()
    work = tmp_path / "work"
    ledger = work / "01-dedup.exact" / "ledger-00001.parquet"
    rows = pq.read_table(ledger).to_pylist()
    assert rows  # the shard holds drops
    _truncate(ledger)

    ins = cli("inspect", str(work))
    assert ins.returncode == 1 and "Traceback" not in ins.stderr
    assert squeeze(f"damaged shard {ledger}: ") in squeeze(ins.stderr)

    run = cli("run", str(path), "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert squeeze(f"note: {ledger}: ") in squeeze(run.stderr)
    assert pq.read_table(ledger).to_pylist() == rows
    assert cli("inspect", str(work)).returncode == 0
    assert len(ledger_rows(work / "01-dedup.exact")) == 9


def test_an_unreadable_shard_without_checksums_is_named():
    bad = Path(__file__)  # not Parquet at all; a marker from before checksums (None) checks nothing
    with pytest.raises(DamagedShard, match=rf"damaged shard {bad}: not readable as Parquet"):
        read_parquet(bad, None)


def test_a_stage_whose_completed_shard_marker_vanished_redoes_that_shard(tmp_path):
    path = make_pipeline(tmp_path, ["dedup.exact"])
    first = Pipeline.from_yaml(path).run()
    sd = StageDir(tmp_path / "work" / "01-dedup.exact")
    sd.done_path("00004").unlink()
    result = Pipeline.from_yaml(path).run()
    assert any("part-00004.done: the marker of a completed shard is gone" in n for n in result.notes)
    assert result.stages[1].kept == first.stages[1].kept == 41 and "00004" in sd.shards()


# --- leftovers of dead drivers ----------------------------------------------------------


def test_the_sweep_removes_only_what_dead_owners_left(tmp_path):
    dead, live = dead_pid(), os.getpid()
    stage = tmp_path / "00-ingest"
    stage.mkdir()
    for name in (f"part-00000.parquet.tmp{dead}", f"manifest.json.tmp{live}", "part-00000.parquet"):
        (stage / name).write_text("x")
    assert sweep_tmp_files([stage]) == [stage / f"part-00000.parquet.tmp{dead}"]
    assert {p.name for p in stage.iterdir()} == {f"manifest.json.tmp{live}", "part-00000.parquet"}

    boxes = tmp_path / "tmp"
    for name in (f"reasonmill-box-{dead}-ab12", f"reasonmill-box-{live}-cd34", "reasonmill-box-12345678",
                 f"reasonmill-pyc-{dead}-ef56"):
        (boxes / name / "build").mkdir(parents=True)
        (boxes / name / "build" / "prog.py").write_text("print(1)")
    assert sorted(sweep_box_dirs(boxes)) == [boxes / f"reasonmill-box-{dead}-ab12", boxes / f"reasonmill-pyc-{dead}-ef56"]
    assert {p.name for p in boxes.iterdir()} == {f"reasonmill-box-{live}-cd34", "reasonmill-box-12345678"}


def test_the_sweep_keeps_semaphores_a_live_process_has_mapped(tmp_path):
    shm = tmp_path / "shm"
    shm.mkdir()
    orphan, used = shm / "sem.mp-orphan1", shm / "sem.mp-inuse22"
    for p in (orphan, used):
        p.write_bytes(b"\0" * 32)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import mmap,sys,time\nf=open(sys.argv[1],'r+b')\nm=mmap.mmap(f.fileno(),32)\n"
         "print('mapped',flush=True)\ntime.sleep(60)", str(used)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "mapped"
        assert sweep_semaphores(shm, min_age_s=0) == [orphan]
        assert used.exists()
        assert sweep_semaphores(shm, min_age_s=3600) == []  # young ones wait
    finally:
        holder.kill()
        holder.wait()


_DRIVER = """
import os, sys, time
from reasonmill import Pipeline
from reasonmill.engine.local import LocalEngine
cfg = Pipeline.from_dict({"sources": [{"name": "x", "path": sys.argv[1], "preset": "problem_answer"}]}).config
engine = LocalEngine(cfg, sys.argv[2], workers=2)
pool = engine.pool()
pids = set()
while len(pids) < 2:
    pids |= {f.result() for f in [pool.submit(os.getpid) for _ in range(8)]}
futs = [pool.submit(time.sleep, 300) for _ in range(2)]  # workers busy, as on a long shard
print(" ".join(map(str, sorted(pids))), flush=True)
time.sleep(300)
"""


def test_engine_pool_workers_die_with_a_killed_driver(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"problem": "What is 1 + 1 in decimal?", "answer": "2"}\n')
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(data), str(tmp_path / "work")], env=ENV, stdout=subprocess.PIPE, text=True
    )
    workers = [int(p) for p in driver.stdout.readline().split()]
    assert len(workers) == 2 and driver.pid not in workers
    time.sleep(0.3)  # both workers are in time.sleep(300)
    os.kill(driver.pid, signal.SIGKILL)  # the driver alone, not its process group
    driver.wait()
    deadline = time.time() + 10
    alive = list(workers)
    while alive and time.time() < deadline:
        alive = [p for p in workers if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]
        time.sleep(0.1)
    assert alive == [], f"pool workers {alive} outlived the driver"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "X"


# --- labels, I/O errors, inspect --------------------------------------------------------


@pytest.mark.parametrize(
    "label, problem",
    [("../../../victim", "path separator"), ("..", "'..'"), ("", "empty"), ("a\\b", "path separator"), ("x\x1b", "control")],
)
def test_stage_labels_that_are_not_folder_names_are_refused_at_load(tmp_path, label, problem):
    path = make_pipeline(tmp_path, ["dedup.exact", {"stage": "test.slow", "as": label, "log": "l.txt"}])
    with pytest.raises(ConfigError) as exc:
        load_pipeline(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: stages[1]: stage label") and problem in msg


def _in_tiny_tmpfs(mountpoint: Path, cmd: list[str], kb: int) -> subprocess.CompletedProcess:
    """``cmd`` with ``mountpoint`` a ``kb``-KiB tmpfs, in a private user+mount namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a tiny tmpfs")
    mountpoint.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(mountpoint)],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.strip()}")
    script = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"'
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", f"{kb}k", str(mountpoint), *cmd],
        env=ENV, capture_output=True, text=True, timeout=120,
    )


def test_a_full_disk_under_the_workdir_or_an_export_names_the_file(tmp_path):
    path = make_pipeline(tmp_path, ["dedup.exact"], n=3000, shard_size=300)
    run = [sys.executable, "-m", "reasonmill.cli", "run", str(path), "--quiet", "--workers", "1"]
    full = _in_tiny_tmpfs(tmp_path / "work", run, kb=48)
    err = squeeze(full.stderr)
    assert full.returncode == 1 and "Nospaceleftondevice" in err and squeeze(f"{tmp_path / 'work'}/") in err, full.stderr

    export_full = _in_tiny_tmpfs(tmp_path / "out", [*run, "--workdir", str(tmp_path / "work2")], kb=16)
    err = squeeze(export_full.stderr)
    assert export_full.returncode == 1 and "Nospaceleftondevice" in err, export_full.stderr
    assert squeeze(str(tmp_path / "out" / "am.jsonl")) in err


def test_inspect_shows_terminal_escapes_as_escapes(tmp_path):
    work = tmp_path / "work"
    sd = StageDir(work / "01-clean")
    evil = "id-\x1b]0;owned\x07\x1b[2J\x9b31m\u202eabc"
    record = {"id": evil, "problem": "p\x1b[31mred\x7f"}
    row = {"stage": "clean", "id": evil, "kind": "record", "response_index": None, "reason": "r\x1b[5m",
           "message": "m\x1b[8m\nnext", "evidence": json.dumps({"e": "\x1b[1m"}), "record": json.dumps(record)}
    sd.write_shard_table("00000", to_table([]), [row], {"in": 1, "kept": 0, "dropped": 1})
    (work / "summary.json").write_text(json.dumps(
        {"stages": [{"label": "clean\x1b[31m", "records_in": 1, "kept": 0, "dropped": 1, "reasons": {"r\x1b": 1}}]}
    ))
    for args in ([], ["--id", evil]):
        out = cli("inspect", str(work), *args)
        assert out.returncode == 0, out.stderr
        for raw in ("\x1b", "\x07", "\x9b", "\x7f", "\u202e"):
            assert raw not in out.stdout, (raw, out.stdout)
        assert "\\x1b]0;owned\\x07" in out.stdout and "\\u202e" in out.stdout
    assert "\\u001b[31mred\\u007f" in out.stdout  # the record, as JSON escapes
