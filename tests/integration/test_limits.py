"""Limits: each one holds, is reported with its typed reason, and leaves the
next run unaffected (HOSTILE.md R-01, R-02, R-03, R-05, R-08, R-09, R-10, R-12)."""
import json
import os
import time

import pytest

from conftest import SLOW, run, sandboxed


def result(*argv, opts=(), **kw):
    p = sandboxed(*argv, opts=("--json", *opts), **kw)
    return p, json.loads(p.stdout)


@pytest.fixture(autouse=True)
def next_run_unaffected():
    """After every limit test, a plain run next to it works and hits nothing."""
    yield
    p, r = result("sh", "-c", "echo fine")
    assert r["exit_code"] == 0 and r["stdout"] == "fine\n" and r["limit"] is None, r


def test_fork_bomb_stops_with_pids():
    """R-01: the pids limit stops a fork bomb; the host stays responsive."""
    start = time.monotonic()
    p, r = result("sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 30", opts=("--pids", "64", "--timeout", "60s"))
    assert r["limit"] == "pids" and r["exit_code"] == 137, r
    assert time.monotonic() - start < 30
    assert run(["true"], timeout=5).returncode == 0


def test_memory_hog_stops_with_oom():
    """R-02: OOM inside the sandbox's cgroup; exit 137, reason oom. In a
    guest this hog can fill its limit so tightly that it lives on
    re-reading its own program over 9p, never OOM-killed: the engine's
    thrash watch stops it within seconds (src/sandbox/thrash.c)."""
    start = time.monotonic()
    p, r = result("python3", "-c", "x = []\nwhile True: x.append(bytearray(1 << 20))",
                  opts=("--memory", "64m"))
    assert r["limit"] == "oom" and r["exit_code"] == 137, r
    assert "oom" in p.stderr
    assert time.monotonic() - start < 60


# A program that holds 80% of its limit (more with the interpreter and its
# page cache: in a guest it sits at the limit, where the thrash watch
# judges) and works there for longer than the watch's 3 windows.
HOLD = """import hashlib, time
held = b"\\1" * ({mib} << 20)
start = time.monotonic()
while time.monotonic() - start < 5:
    hashlib.sha256(held[:1 << 20]).digest()
print("held", len(held) >> 20)
"""


def test_memory_near_the_limit_is_not_stopped():
    """A run holding most of its limit that does not thrash exits 0, unstopped."""
    p, r = result("python3", "-c", HOLD.format(mib=52), opts=("--memory", "64m"))
    assert r["exit_code"] == 0 and r["limit"] is None and r["stdout"] == "held 52\n", r
    assert r["peak_memory_bytes"] >= 52 << 20, r


def test_streaming_more_than_the_limit_is_not_stopped(tmp_path):
    """Reading a file far larger than the limit, over and over for longer than
    the thrash watch's 3 windows, re-reads more than the hog does (seen in a
    guest: ~190 MB/s) but only cycles the page cache: not out of memory."""
    with open(tmp_path / "big", "wb") as f:
        for _ in range(48):
            f.write(os.urandom(1 << 20))
        # out of the host's page cache, so that the run's reads are charged
        # to the run (the ns backend shares the host's cache)
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    script = ("end=$(($(date +%s) + 6)); while [ $(date +%s) -lt $end ]; do"
              " cat /workspace/big > /dev/null || exit 1; done; echo read")
    p, r = result("sh", "-c", script, opts=("--memory", "32m", "--workspace-ro", str(tmp_path)))
    assert r["exit_code"] == 0 and r["limit"] is None and r["stdout"] == "read\n", r
    assert r["peak_memory_bytes"] >= 29 << 20, r  # the cache filled the limit


def test_disk_filler_stops_with_disk_full():
    """R-03/R-05: filling /tmp hits --disk; reason disk_full."""
    p, r = result("sh", "-c", "cat /dev/zero > /tmp/fill; sleep 5", opts=("--disk", "8m"))
    assert r["limit"] == "disk_full", r
    assert r["wall_ms"] < 4000


def test_workspace_tmpfs_is_bounded_too():
    p, r = result("sh", "-c", "head -c 20000000 /dev/zero > /workspace/fill", opts=("--disk", "4m"))
    assert r["limit"] == "disk_full" and r["exit_code"] != 0, r


def test_output_flood_is_cut():
    """R-10: several GiB of output; the stream is cut at --output and flagged."""
    start = time.monotonic()
    p = sandboxed("sh", "-c", "head -c 3221225472 /dev/zero; echo done >&2",
                  opts=("--output", "1m"), timeout=120)
    assert len(p.stdout) == 1 << 20
    assert "output_truncated" in p.stderr and "done" in p.stderr
    assert p.returncode == 0
    assert time.monotonic() - start < 60


def test_output_flood_json():
    p, r = result("sh", "-c", "yes | head -c 50000000", opts=("--output", "64k"))
    assert r["limit"] == "output_truncated" and r["stdout_truncated"] is True
    assert len(r["stdout"]) == 65536 and r["exit_code"] == 0


def test_infinite_loop_stops_with_timeout():
    """R-12: the wall clock; exit 124."""
    start = time.monotonic()
    p, r = result("sh", "-c", "while :; do :; done", opts=("--timeout", "1s"))
    assert r["limit"] == "timeout" and r["exit_code"] == 124 and r["end"] == "timeout", r
    assert 1000 <= r["wall_ms"] < 3000, r  # the command's own time, as the engine measured it
    assert time.monotonic() - start < 5 * SLOW  # and no hang around it (a guest's start under load)


def test_cpu_time_limit():
    p, r = result("sh", "-c", "while :; do :; done", opts=("--cpu-time", "500ms", "--timeout", "30s"))
    assert r["limit"] == "cpu" and r["exit_code"] == 137, r
    assert r["wall_ms"] < 10000


def test_cpus_quota_slows_a_busy_loop():
    """R-08: 0.2 CPUs: half a second of CPU work takes well over a second."""
    script = "import time\nt=time.process_time()\nwhile time.process_time()-t < 0.5: pass"
    p, r = result("python3", "-c", script, opts=("--cpus", "0.2"))
    assert r["exit_code"] == 0, r
    assert r["wall_ms"] > 1500, r
    p, r = result("python3", "-c", script)
    assert r["wall_ms"] < 1500, r


def test_nofile_limit():
    """R-09: EMFILE at --nofile."""
    script = ("import os\nfds=[]\ntry:\n  while True: fds.append(os.open('/dev/null', os.O_RDONLY))\n"
              "except OSError as e: print(len(fds), e.errno)")
    p, r = result("python3", "-c", script, opts=("--nofile", "64"))
    count, errno = r["stdout"].split()
    assert errno == "24" and int(count) < 64, r


def test_execs_limit():
    p, r = result("sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done; echo finished",
                  opts=("--execs", "5"))
    assert r["limit"] == "execs" and r["exit_code"] == 137, r
    assert "finished" not in r["stdout"]


def test_execs_are_counted():
    p, r = result("sh", "-c", "/bin/true; /bin/true | /bin/cat; ls / >/dev/null")
    assert r["execs"] == 5, r  # sh itself, true, true, cat, ls


@pytest.mark.parametrize("flag,value", [("--cpus", "0"), ("--cpus", "lots"), ("--disk", "0"),
                                        ("--output", "-1"), ("--nofile", "3"), ("--execs", "0"),
                                        ("--cpu-time", "forever"), ("--memory", "1k")])
def test_bad_limit_values(flag, value):
    p = sandboxed("true", opts=(flag, value))
    assert p.returncode == 125
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], p.stderr
