"""Instance logs (issue 5): the shim's log writer, GET /v1/instances/NAME/logs
and `aegis logs`: tail, since, follow, rotation, stdout/stderr kept apart
and in order, nothing lost at exit, byte-exact output, bad parameters.

The on-disk format is src/common/logrecord.h: JSON lines in
<state>/instances/NAME/output.NNNNNNNN.jsonl."""
import base64
import datetime
import json
import os
import queue
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import AEGIS, SLOW, TEST_BACKEND, run

AEGISD = os.path.join(os.path.dirname(AEGIS), "aegisd")


def make_env(**extra):
    d = tempfile.mkdtemp(prefix="aegis-logs-")
    ws = os.path.join(d, "ws")
    os.mkdir(ws)
    e = {k: v for k, v in os.environ.items() if k != "AEGIS_LOG_MAX_BYTES"}
    e.update(AEGIS_SOCKET=os.path.join(d, "run", "aegisd.sock"), AEGIS_STATE_DIR=os.path.join(d, "state"),
             TEST_WS=ws, **extra)
    return d, e


def cleanup(d, e):
    inst = os.path.join(d, "state", "instances")
    for name in os.listdir(inst) if os.path.isdir(inst) else []:
        run([AEGIS, "instance", "delete", name], env=e)
    run([AEGIS, "down"], env=e)
    subprocess.run(["rm", "-rf", d])


@pytest.fixture
def env():
    d, e = make_env()
    yield e
    cleanup(d, e)


@pytest.fixture
def small_env():
    """Log files of 2 KiB: a few hundred lines rotate them several times."""
    d, e = make_env(AEGIS_LOG_MAX_BYTES="2048")
    yield e
    cleanup(d, e)


def aegis(env, *args, **kw):
    return run([AEGIS, *args], env=env, **kw)


def aegis_bytes(env, *args):
    return subprocess.run([AEGIS, *args], env=env, capture_output=True, timeout=60)


def start(env, name, script, workspace=True):
    ws = ["--workspace", env["TEST_WS"]] if workspace else []
    p = aegis(env, "instance", "start", "--name", name, *ws, "--", "sh", "-c", script)
    assert p.returncode == 0, p


def info(env, name):
    p = aegis(env, "instance", "info", name)
    return json.loads(p.stdout) if p.returncode == 0 else None


def wait_for(what, cond, timeout=10):
    deadline = time.monotonic() + timeout * SLOW
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def wait_state(env, name, want):
    last = []

    def state():
        last[:] = [info(env, name)]
        return last[0] and last[0]["state"] == want and last[0]
    try:
        return wait_for(f"{name} {want}", state)
    except AssertionError as e:
        raise AssertionError(f"{e}; last seen: {last}") from None


def touch(env, name):
    open(os.path.join(env["TEST_WS"], name), "w").close()


def api(env, path):
    """GET through curl: (status, body bytes)."""
    p = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "--unix-socket", env["AEGIS_SOCKET"],
                        "http://x" + path], capture_output=True, timeout=30)
    body, _, status = p.stdout.rpartition(b"\n")
    return int(status), body


def api_json(env, path):
    status, body = api(env, path)
    return status, json.loads(body)


def log_files(env, name):
    d = os.path.join(env["AEGIS_STATE_DIR"], "instances", name)
    return sorted(f for f in os.listdir(d) if f.startswith("output.") and f.endswith(".jsonl"))


class Follower:
    """`aegis logs -f NAME`, its stdout read line by line as it comes."""

    def __init__(self, env, *args):
        self.p = subprocess.Popen([AEGIS, "logs", "-f", *args], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_line(self, timeout=10):
        return self.lines.get(timeout=timeout)

    def finish(self, timeout=15):
        rc = self.p.wait(timeout=timeout)
        rest = []
        while (line := self.next_line()) is not None:
            rest.append(line)
        return rc, rest, self.p.stderr.read()


def test_streams_apart_and_byte_exact(env):
    start(env, "bytes", r"printf 'out1\nout2\n'; printf 'err1\n' >&2; printf '\377\376bin\000ary\n';"
          r" printf 'no newline'; printf 'e\303\251\n' >&2", workspace=False)
    wait_state(env, "bytes", "exited")
    # exited: the whole log is there, no waiting
    p = aegis_bytes(env, "logs", "bytes")
    assert p.returncode == 0, p
    assert p.stdout == b"out1\nout2\n\xff\xfebin\x00ary\nno newline"
    assert p.stderr == b"err1\ne\xc3\xa9\n"
    status, body = api_json(env, "/v1/instances/bytes/logs")
    assert status == 200 and body["name"] == "bytes" and body["truncated"] is False
    assert body["stdout"] == "out1\nout2\n\ufffd\ufffdbin\x00ary\nno newline"
    assert body["stderr"] == "err1\ne\u00e9\n"
    bad = [r for r in body["lines"] if "raw" in r]
    assert len(bad) == 1 and bad[0]["log"] == "\ufffd\ufffdbin\x00ary\n"
    assert base64.b64decode(bad[0]["raw"]) == b"\xff\xfebin\x00ary\n"
    assert {r["s"] for r in body["lines"]} == {"stdout", "stderr"}


def test_tail_counts_lines_of_each_stream(env):
    long = "x" * 40000  # three records: lines are split at 16 KiB
    start(env, "tail", f"for i in 1 2 3 4 5; do echo line$i; done; for i in 1 2 3; do echo err$i >&2; done;"
          f" printf '{long}\\n'; echo short", workspace=False)
    wait_state(env, "tail", "exited")
    lines = "".join(f"line{i}\n" for i in range(1, 6))
    p = aegis(env, "logs", "tail", "--tail", "2")
    assert p.stdout == long + "\nshort\n" and p.stderr == "err2\nerr3\n", p
    p = aegis(env, "logs", "tail", "-n", "1")
    assert p.stdout == "short\n" and p.stderr == "err3\n", p
    p = aegis(env, "logs", "tail", "--tail", "4")
    assert p.stdout == "line4\nline5\n" + long + "\nshort\n" and p.stderr == "err1\nerr2\nerr3\n", p
    for n in ("0", "100"):
        p = aegis(env, "logs", "tail", "--tail", n)
        assert p.stdout == lines + long + "\nshort\n", n
    status, body = api_json(env, "/v1/instances/tail/logs?tail=1")
    # (the order across streams is the order of arrival, the same moment here)
    assert status == 200 and sorted((r["s"], r["log"]) for r in body["lines"]) == [("stderr", "err3\n"),
                                                                                   ("stdout", "short\n")]
    assert body["stdout"] == "short\n" and body["stderr"] == "err3\n"
    status, body = api_json(env, "/v1/instances/tail/logs?tail=2&stdout=false")
    assert body["stdout"] == "" and body["stderr"] == "err2\nerr3\n"


def test_since(env):
    start(env, "since", "echo early; echo early-err >&2; while [ ! -e /workspace/go ]; do sleep 0.02; done;"
          " echo late; echo late-err >&2; sleep 60")
    wait_for("early output", lambda: aegis(env, "logs", "since").stdout == "early\n")
    t = time.time()  # after early was written, before late is
    touch(env, "go")
    wait_for("late output", lambda: aegis(env, "logs", "since").stdout == "early\nlate\n")
    p = aegis(env, "logs", "since", "--since", f"{t:.6f}")
    assert p.stdout == "late\n" and p.stderr == "late-err\n", p
    utc = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    p = aegis(env, "logs", "since", "--since", utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    assert p.stdout == "late\n" and p.stderr == "late-err\n", p
    p = aegis(env, "logs", "since", "--since", "1h")
    assert p.stdout == "early\nlate\n" and p.stderr == "early-err\nlate-err\n", p
    assert aegis(env, "logs", "since", "--since", str(int(t) + 3600)).stdout == ""
    # the API takes RFC 3339 with an offset too (+ is %2B in a query)
    plus2 = utc.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    status, body = api_json(env, "/v1/instances/since/logs?since=" +
                            plus2.isoformat(timespec="microseconds").replace("+", "%2B"))
    assert status == 200 and body["stdout"] == "late\n" and body["stderr"] == "late-err\n", body
    # since and tail together: both hold
    p = aegis(env, "logs", "since", "--since", "1h", "--tail", "1")
    assert p.stdout == "late\n" and p.stderr == "late-err\n", p


def test_follow_sees_new_output_and_ends_with_the_instance(env):
    start(env, "fol", "echo first; while [ ! -e /workspace/go1 ]; do sleep 0.02; done; echo second;"
          " echo second-err >&2; while [ ! -e /workspace/go2 ]; do sleep 0.02; done; printf third; exit 0")
    wait_for("first output", lambda: aegis(env, "logs", "fol").stdout == "first\n")
    f = Follower(env, "fol")
    assert f.next_line() == b"first\n"
    touch(env, "go1")  # written after the follower started
    assert f.next_line() == b"second\n"
    assert f.p.poll() is None  # still following
    touch(env, "go2")
    rc, rest, err = f.finish()
    assert rc == 0 and rest == [b"third"] and err == b"second-err\n", (rc, rest, err)
    assert info(env, "fol")["state"] == "exited"


def test_follow_of_an_ended_instance_prints_all_and_returns(env):
    start(env, "done", "echo a; echo b >&2; exit 0", workspace=False)
    wait_state(env, "done", "exited")
    p = aegis(env, "logs", "-f", "done", timeout=10)
    assert p.returncode == 0 and p.stdout == "a\n" and p.stderr == "b\n", p


def test_follow_ends_when_the_instance_is_deleted(env):
    start(env, "gone", "echo hi; sleep 60", workspace=False)
    wait_for("output", lambda: aegis(env, "logs", "gone").stdout == "hi\n")
    f = Follower(env, "gone")
    assert f.next_line() == b"hi\n"
    assert aegis(env, "instance", "delete", "gone").returncode == 0
    rc, rest, err = f.finish()
    assert rc == 0 and rest == [], (rc, rest, err)


def test_follow_with_tail_and_since(env):
    start(env, "ft", "seq 1 5; while [ ! -e /workspace/go ]; do sleep 0.02; done; echo six; exit 0")
    wait_for("output", lambda: aegis(env, "logs", "ft").stdout == "1\n2\n3\n4\n5\n")
    f = Follower(env, "--tail", "2", "ft")
    assert [f.next_line(), f.next_line()] == [b"4\n", b"5\n"]
    g = Follower(env, "--since", f"{time.time():.6f}", "ft")  # from now: only what comes next
    touch(env, "go")
    assert f.finish()[:2] == (0, [b"six\n"])
    assert g.finish()[:2] == (0, [b"six\n"])


def test_output_just_before_exit_is_not_lost(env):
    """The shim drains the pipes and the log reaches the disk before
    exit.json: a follower, which stops at exit.json, gets all of what was
    written just before the exit (unfinished lines too); so does anyone who
    sees the instance exited."""
    for n in range(5):
        name = f"burst{n}"
        start(env, name, f"echo go; while [ ! -e /workspace/go{n} ]; do sleep 0.01; done;"
              " seq 1 2000; printf tail-without-newline; printf last-err >&2")
        f = Follower(env, name)
        assert f.next_line() == b"go\n"  # attached and caught up
        touch(env, f"go{n}")
        rc, rest, err = f.finish()
        want = "".join(f"{i}\n" for i in range(1, 2001)).encode() + b"tail-without-newline"
        assert rc == 0 and b"".join(rest) == want and err == b"last-err", (name, rc, rest[-2:], err)
    want = "".join(f"{i}\n" for i in range(1, 100001)) + "tail-without-newline"
    start(env, "big", "seq 1 100000; printf tail-without-newline; printf last-err >&2", workspace=False)
    wait_state(env, "big", "exited")
    p = aegis(env, "logs", "big")
    assert p.returncode == 0 and p.stdout == want and p.stderr == "last-err", len(p.stdout)
    assert "log_dropped_bytes" not in info(env, "big")["exit"]


def test_order_and_timestamps(env):
    before = time.time()
    start(env, "order", "echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2; sleep 0.2; echo err2 >&2",
          workspace=False)
    wait_state(env, "order", "exited")
    after = time.time()
    status, body = api_json(env, "/v1/instances/order/logs")
    got = [(r["s"], r["log"]) for r in body["lines"]]
    assert got == [("stdout", "out1\n"), ("stderr", "err1\n"), ("stdout", "out2\n"), ("stderr", "err2\n")], got
    ts = [r["t"] for r in body["lines"]]
    assert ts == sorted(ts) and before * 1e9 <= ts[0] and ts[-1] <= after * 1e9
    assert ts[1] - ts[0] > 0.1e9  # the time a line was written, not read back
    # the stream, one stream only
    status, raw = api(env, "/v1/instances/order/logs?format=ndjson&stdout=false")
    recs = [json.loads(line) for line in raw.decode().splitlines()]
    assert status == 200 and [r["log"] for r in recs] == ["err1\n", "err2\n"]
    assert raw.decode().splitlines()[0] == next(
        line for line in open(os.path.join(env["AEGIS_STATE_DIR"], "instances", "order",
                                           log_files(env, "order")[0])).read().splitlines() if "err1" in line)
    p = aegis(env, "logs", "--timestamps", "order")
    for out, text in ((p.stdout, ["out1", "out2"]), (p.stderr, ["err1", "err2"])):
        lines = out.splitlines()
        assert [ln.split(" ", 1)[1] for ln in lines] == text, out
        for ln in lines:
            when = datetime.datetime.strptime(ln.split(" ")[0][:26] + "Z", "%Y-%m-%dT%H:%M:%S.%fZ")
            assert before - 1 <= when.replace(tzinfo=datetime.timezone.utc).timestamp() <= after + 1


def test_json_answer_is_bounded_and_the_cli_is_not(env):
    start(env, "big", "seq 1 400000", workspace=False)  # ~20 MB of records
    wait_state(env, "big", "exited")
    status, body = api_json(env, "/v1/instances/big/logs")
    assert status == 200 and body["truncated"] is True
    lines = body["stdout"].splitlines()
    assert lines[-1] == "400000" and lines == [str(i) for i in range(int(lines[0]), 400001)]
    assert 0 < len(json.dumps(body["lines"])) < 6 << 20
    p = aegis(env, "logs", "big")
    assert p.stdout == "".join(f"{i}\n" for i in range(1, 400001))


def test_rotation_bounds_the_log(small_env):
    env = small_env
    start(env, "rot", "seq -f 'line %g' 0 1999", workspace=False)
    wait_state(env, "rot", "exited")
    files = log_files(env, "rot")
    sizes = [os.path.getsize(os.path.join(env["AEGIS_STATE_DIR"], "instances", "rot", f)) for f in files]
    assert 2 <= len(files) <= 4, files  # the newest and at most 3 older ones
    assert int(files[-1].split(".")[1]) > 10  # it rotated many times
    assert all(s <= 2048 for s in sizes), sizes
    lines = aegis(env, "logs", "rot").stdout.splitlines()
    first = int(lines[0].split()[1])
    assert first > 0 and lines == [f"line {i}" for i in range(first, 2000)]  # the newest, none missing
    assert aegis(env, "logs", "rot", "--tail", "3").stdout == "line 1997\nline 1998\nline 1999\n"


def test_follow_across_rotations(small_env):
    env = small_env
    start(env, "rotf", "echo ready; while [ ! -e /workspace/go ]; do sleep 0.02; done; seq -f 'n%g' 1 90")
    wait_for("ready", lambda: aegis(env, "logs", "rotf").stdout == "ready\n")
    f = Follower(env, "rotf")
    assert f.next_line() == b"ready\n"
    touch(env, "go")
    rc, rest, err = f.finish()
    assert rc == 0 and rest == [f"n{i}\n".encode() for i in range(1, 91)], (rc, rest[:3], err)
    assert int(log_files(env, "rotf")[-1].split(".")[1]) >= 3  # it did rotate under the follower


def test_a_torn_record_is_skipped_and_the_log_goes_on(env):
    """A shim killed mid-write leaves half a record: readers skip it, and
    the next run's shim starts its records on a line of their own."""
    start(env, "torn", "echo one", workspace=False)
    wait_state(env, "torn", "exited")
    path = os.path.join(env["AEGIS_STATE_DIR"], "instances", "torn", log_files(env, "torn")[-1])
    with open(path, "a") as f:
        f.write('{"t":12,"s":"stdout","log":"half')
    assert aegis(env, "logs", "torn").stdout == "one\n"
    # (a shim that has written exit.json may live on for a moment: "running already")
    wait_for("restart", lambda: aegis(env, "instance", "start", "--name", "torn").returncode == 0)
    wait_for("second run", lambda: aegis(env, "logs", "torn").stdout == "one\none\n")
    p = aegis(env, "logs", "torn", "--tail", "1")
    assert p.returncode == 0 and p.stdout == "one\n", p


@pytest.mark.parametrize("query,field", [
    ("tail=-1", "tail"), ("tail=x", "tail"), ("tail=", "tail"), ("tail=1e3", "tail"),
    ("since=yesterday", "since"), ("since=-5", "since"), ("since=2024-13-01T00:00:00Z", "since"),
    ("since=2024-02-30T00:00:00Z", "since"), ("since=2024-01-01T00:00:00", "since"), ("since=", "since"),
    ("follow=maybe", "follow"), ("stdout=nope", "stdout"), ("stderr=2", "stderr"), ("format=xml", "format"),
    ("stdout=false&stderr=false", "stdout"), ("follow=true&format=json", "format"), ("bogus=1", "bogus"),
])
def test_bad_parameters_are_400(env, query, field):
    assert aegis(env, "up").returncode == 0  # parameters are checked before the name
    status, body = api_json(env, "/v1/instances/nosuch/logs?" + query)
    assert status == 400 and body["error"]["code"] == "invalid" and body["error"]["field"] == field, body
    assert body["error"]["message"]


def test_api_errors(env):
    assert aegis(env, "up").returncode == 0
    assert api_json(env, "/v1/instances/nosuch/logs")[0] == 404
    assert api_json(env, "/v1/instances/nosuch/logs?follow=true")[0] == 404
    p = subprocess.run(["curl", "-s", "-X", "POST", "--unix-socket", env["AEGIS_SOCKET"],
                        "http://x/v1/instances/nosuch/logs"], capture_output=True, text=True)
    assert json.loads(p.stdout)["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("args", [["p", "--tail", "x"], ["p", "--tail", "-1"], ["p", "--tail"],
                                  ["p", "--since", "yesterday"], ["p", "--since", "-5m"], ["p", "--bogus"],
                                  [], ["a", "b"], ["../x"], ["a?tail=1"]])
def test_cli_bad_input(env, args):
    p = aegis(env, "logs", *args)
    assert p.returncode == 125 and len(p.stderr.strip().splitlines()) == 1 and p.stdout == "", p
    assert p.stderr.startswith("aegis: logs: "), p


def test_cli_unknown_instance(env):
    p = aegis(env, "logs", "nosuch")
    assert p.returncode == 125 and p.stderr == "aegis: logs: name: no instance of that name\n", p


def test_a_bad_log_size_stops_the_daemon(tmp_path):
    e = dict(os.environ, AEGIS_STATE_DIR=str(tmp_path / "state"), AEGIS_LOG_MAX_BYTES="12")
    os.mkdir(tmp_path / "run", 0o700)
    p = run([AEGISD, "--socket", str(tmp_path / "run" / "s.sock")], env=e, timeout=10)
    assert p.returncode == 125 and "AEGIS_LOG_MAX_BYTES" in p.stderr, p


def test_daemon_stops_with_a_follower_attached(env):
    start(env, "idle", "echo hi; sleep 60", workspace=False)
    wait_for("output", lambda: aegis(env, "logs", "idle").stdout == "hi\n")
    f = Follower(env, "idle")
    assert f.next_line() == b"hi\n"
    t = time.monotonic()
    assert aegis(env, "down").returncode == 0
    assert time.monotonic() - t < 5
    rc, rest, err = f.finish()
    assert rc == 125 and b"aegis: " in err, (rc, err)


def test_followers_that_leave_free_their_connections(env):
    """A follower's hangup ends its stream at once, even while nothing is
    written: more followers come and go than aegisd has connections (64)."""
    start(env, "quiet", "echo hi; sleep 60", workspace=False)
    wait_for("output", lambda: aegis(env, "logs", "quiet").stdout == "hi\n")
    for _ in range(70):
        f = Follower(env, "quiet")
        assert f.next_line() == b"hi\n"
        f.p.kill()
        f.p.wait()
    p = aegis(env, "logs", "quiet", timeout=10)
    assert p.returncode == 0 and p.stdout == "hi\n", p


def test_a_full_disk_loses_output_visibly():
    """Output the disk has no room for is counted, never dropped silently: a
    marker where it was lost (written once there is room again), the total in
    exit.json, and what was kept plus what was lost is all of it."""
    d, e = make_env()
    state = e["AEGIS_STATE_DIR"]
    os.makedirs(state)
    # The filler leaves ~124 KiB free, and removing it frees far more than
    # the whole burst needs (8 MiB against ~1.5 MB of records): so the part
    # of the burst still queued when room comes back, and the "after"
    # behind it, are all written, however far the shim's writer lags. (A
    # vm instance also needs the state dir's copy of the /etc allowlist,
    # vm-etc/, ~0.6 MiB, made by the first vm run before the filler.)
    vm = TEST_BACKEND == "vm"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", state], check=True)
    try:
        assert aegis(e, "up").returncode == 0
        if vm:
            assert aegis(e, "run", "--", "true").returncode == 0
        room = os.statvfs(state)
        with open(os.path.join(state, "filler"), "wb") as f:
            f.write(b"\0" * (room.f_bavail * room.f_frsize - (124 << 10)))
        start(e, "full", "seq 1 30000; touch /workspace/seq-done; while [ ! -e /workspace/go ]; do sleep 0.02;"
              " done; echo after")
        wait_for("the burst", lambda: os.path.exists(os.path.join(e["TEST_WS"], "seq-done")))
        os.unlink(os.path.join(state, "filler"))
        touch(e, "go")
        lost = wait_state(e, "full", "exited")["exit"]["log_dropped_bytes"]
        status, body = api_json(e, "/v1/instances/full/logs?format=json")
        markers = [r["dropped"] for r in body["lines"] if "dropped" in r]
        assert lost > 0 and sum(markers) == lost, (lost, markers)
        p = aegis_bytes(e, "logs", "full")
        total = len("".join(f"{i}\n" for i in range(1, 30001))) + len("after\n")
        assert p.returncode == 0 and p.stdout.endswith(b"after\n") and len(p.stdout) + lost == total
        assert p.stderr.count(b"were lost here") == len(markers)
    finally:
        cleanup(d, e)
        subprocess.run(["umount", state])
        subprocess.run(["rm", "-rf", d])
