#!/usr/bin/env python3
"""bench/expose.py: scale to zero. An instance's port exposed with
`aegis instance start --expose`, woken from paused and from stopped by a
connection, and the router's throughput, side by side with the same server
directly on host loopback, in one run. Prints markdown tables.

The server is bench/expose_srv.c, built statically here and run from the
instance's workspace (`--workspace DIR`, /workspace/expose_srv): one
connection at a time, "GET /" answered with a 3-byte body.

1. Resume: the instance paused with POST /v1/instances/NAME/pause (the
   API on the unix socket), then timed: connect to the exposed port, send
   `GET / HTTP/1.0`, read the first byte of the answer. Against the same
   request while the instance runs (through the router), and directly to
   the same server on host loopback. Also the API's pause and resume alone
   (POST /pause, POST /resume, each until its answer) and the first byte
   once resumed that way. Split by the wall-clock time of the
   instance.wake event in the instance's audit log.
2. Cold wake: an instance with --idle-pause 1s --idle-stop 1s, waited for
   until info says "stopped", then the same request timed. Against the
   server's own start: exec of expose_srv on the host until the first
   byte of its answer (connect retried, with a sched_yield(), while
   refused). Split by the audit log's run.start and the server's exec.
3. Throughput: 1 GiB downloaded from the server (GET /zero/N) and 1 GiB
   uploaded to it (PUT /sink/N) by expose_srv's own client (1 MiB
   read()/write() calls), through the exposed port and directly on host
   loopback; median of BENCH_XFER_RUNS.
4. The v1 freezer: a write of FROZEN to the running instance's
   freezer.state until it reads FROZEN, and of THAWED until THAWED (the
   instance's server is idle), with aegisd running (it keeps the frozen,
   empty cgroup `anchor`) and after `aegis down` and removing the anchor (the
   instance keeps running), then `aegis up` again.

Run as root: python3 bench/expose.py. Env: AEGIS_BIN (default build/aegis;
aegisd is taken next to it), BENCH_RESUME (100 cycles), BENCH_COLD (20),
BENCH_BASE (100 requests to a running server), BENCH_START (50 starts of
the server on the host), BENCH_BYTES (1073741824), BENCH_XFER_RUNS (3),
BENCH_FREEZER (50 cycles), BENCH_WARMUPS (10), BENCH_ANCHOR_WAIT (120:
seconds to wait after `aegis down` for another aegisd's anchor, or any
other frozen cgroup, to go before the row without the anchor). The
daemon runs on a private socket and state dir in a temp dir; the
instances, the daemon, the host server and the temp dir are removed on
the way out, failures included.
It is a bench, not a test: it prints figures and exits 0 when targets are
missed; it fails (exit 1) only when a request gets a wrong answer or an
instance does not come up."""
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # the import below leaves nothing in the tree
from instances import AEGIS, Daemon, api, log, pct, pids_with  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESUME = int(os.environ.get("BENCH_RESUME", "100"))
COLD = int(os.environ.get("BENCH_COLD", "20"))
BASE = int(os.environ.get("BENCH_BASE", "100"))
START = int(os.environ.get("BENCH_START", "50"))
NBYTES = int(os.environ.get("BENCH_BYTES", str(1 << 30)))
XFER_RUNS = int(os.environ.get("BENCH_XFER_RUNS", "3"))
FREEZER = int(os.environ.get("BENCH_FREEZER", "50"))
WARMUPS = int(os.environ.get("BENCH_WARMUPS", "10"))
ANCHOR_WAIT = float(os.environ.get("BENCH_ANCHOR_WAIT", "120"))
GUEST = 8080
CG_FREEZER = "/sys/fs/cgroup/freezer"
# AegisVM's published figures (ms), and this targets
AEGISVM_RESUME_MS, AEGISVM_BOOT_MS = 35.0, 500.0
TARGET_RESUME_MS, TARGET_COLD_MS, TARGET_XFER = 3.0, 30.0, 0.80
REQUEST = b"GET / HTTP/1.0\r\n\r\n"
ANSWER = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_byte_ms(port, timeout=30):
    """connect + GET / + the first byte of the answer, in ms; the rest is
    read and checked after the clock stopped."""
    t = time.perf_counter_ns()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(REQUEST)
        first = s.recv(1)
        ms = (time.perf_counter_ns() - t) / 1e6
        got = [first]
        while True:
            b = s.recv(4096)
            if not b:
                break
            got.append(b)
    if b"".join(got) != ANSWER:
        raise RuntimeError(f"port {port}: unexpected answer {b''.join(got)[:200]!r}")
    return ms


def stats(samples):
    return {"n": len(samples), "p50": pct(samples, 50), "p90": pct(samples, 90), "p99": pct(samples, 99),
            "max": max(samples)}


class HostServer:
    """expose_srv serving on host loopback (0.0.0.0:port, as in the instance)."""

    def __init__(self, exe, port):
        self.argv, self.port, self.proc = [exe, "serve", str(port)], port, None

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    first_byte_ms(self.port, timeout=5)
                    return self
                except OSError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise
                    time.sleep(0.01)
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()


def server_start_ms(exe, port):
    """exec of the server until the first byte of its answer, connect
    retried while refused, with a sched_yield() between tries (a plain
    spin keeps the new process, queued on our CPU, off it for a tick:
    ~4 ms here)."""
    t = time.perf_counter_ns()
    pid = os.posix_spawn(exe, [exe, "serve", str(port)], os.environ,
                         file_actions=[(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)])
    try:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(REQUEST)
                    s.recv(1)
                    ms = (time.perf_counter_ns() - t) / 1e6
                    break
            except ConnectionRefusedError:
                if time.perf_counter_ns() - t > 10e9:
                    raise
                os.sched_yield()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return ms


# --- the daemon's side --------------------------------------------------------

def start_instance(d, name, ws, port, idle_pause, idle_stop):
    """`aegis instance start --expose` of the server; returns once an answer
    came through the port (the router holds the connection until then)."""
    r = subprocess.run([AEGIS, "instance", "start", "--name", name, "--workspace", ws,
                        "--expose", f"127.0.0.1:{port}:{GUEST}", "--idle-pause", idle_pause,
                        "--idle-stop", idle_stop, "--", "/workspace/expose_srv", "serve", str(GUEST)],
                       env=d.env, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"instance start {name}: exit {r.returncode}: {r.stderr.strip()}")
    first_byte_ms(port)


def info(d, name):
    status, body = d.call("GET", f"/v1/instances/{name}")
    if status != 200:
        raise RuntimeError(f"info {name}: {status} {body}")
    return body


def post(d, name, verb):
    t = time.perf_counter_ns()
    status, body = api(d.sock, "POST", f"/v1/instances/{name}/{verb}")
    ms = (time.perf_counter_ns() - t) / 1e6
    if status != 200:
        raise RuntimeError(f"POST {name}/{verb}: {status} {body[:300]!r}")
    return ms


def wait_state(d, name, want, timeout=20):
    deadline = time.monotonic() + timeout
    while (state := info(d, name)["state"]) != want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: still {state} after {timeout} s, waiting for {want}")
        time.sleep(0.02)


def audit_events(d, name):
    """[(type, wall-clock seconds)] of the instance's audit log (in its
    directory in the daemon's state dir), in order."""
    out = []
    try:
        with open(os.path.join(d.dir, "state", "instances", name, "audit.jsonl")) as f:
            for line in f:
                j = json.loads(line)
                ts = datetime.datetime.strptime(j["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
                out.append((j.get("type"), ts.replace(tzinfo=datetime.timezone.utc).timestamp()))
    except (OSError, ValueError, KeyError):
        pass
    return out


def count(events):
    out = {}
    for t, _ in events:
        out[t] = out.get(t, 0) + 1
    return out


def timed_wake(port):
    """first_byte_ms(), and the wall clock (s) just before the connect."""
    wall = time.time()
    return first_byte_ms(port), wall


def resume_part(d, ws, host_port):
    """Baselines, then RESUME pause/wake cycles, then explicit resumes."""
    port = free_port()
    start_instance(d, "warm", ws, port, "0", "0")
    out = {"port": port}
    for _ in range(WARMUPS):
        first_byte_ms(port)
        first_byte_ms(host_port)
    log(f"resume: {BASE} requests to the running instance and to the host server")
    out["direct"] = [first_byte_ms(host_port) for _ in range(BASE)]
    out["running"] = [first_byte_ms(port) for _ in range(BASE)]
    log(f"resume: {RESUME} cycles of pause (API), then a request")
    wakes0 = info(d, "warm")["activity"]["wake_count"]
    audit0 = len(audit_events(d, "warm"))
    pause, wake, walls = [], [], []
    for _ in range(RESUME):
        pause.append(post(d, "warm", "pause"))
        if info(d, "warm")["state"] != "paused":
            raise RuntimeError("warm: not paused after POST /pause")
        time.sleep(0.01)
        ms, wall = timed_wake(port)
        wake.append(ms)
        walls.append(wall)
    out["pause"], out["wake"] = pause, wake
    a = info(d, "warm")
    out["state_after"], out["activity"] = a["state"], a["activity"]
    out["wakes"] = a["activity"]["wake_count"] - wakes0
    events = audit_events(d, "warm")[audit0:]
    out["audit"] = count(events)
    # where the time goes: connect -> the wake's audit event -> first byte
    woken = [ts for t, ts in events if t == "instance.wake"]
    if len(woken) == RESUME:
        out["split"] = {"to_event": [(e - w) * 1e3 for e, w in zip(woken, walls)],
                        "event_to_byte": [w * 1e3 + ms - e * 1e3 for e, w, ms in zip(woken, walls, wake)]}
    log(f"resume: {RESUME} cycles of pause, POST /resume, then a request")
    resume, after = [], []
    for _ in range(RESUME):
        post(d, "warm", "pause")
        time.sleep(0.01)
        resume.append(post(d, "warm", "resume"))
        after.append(first_byte_ms(port))
    out["api_resume"], out["after_api_resume"] = resume, after
    return out


def cold_part(d, ws):
    port = free_port()
    start_instance(d, "cold", ws, port, "1s", "1s")
    wakes0 = info(d, "cold")["activity"]["wake_count"]
    out, walls, t0 = [], [], time.monotonic()
    log(f"cold wake: {COLD} cycles (idle pause 1 s, stop 1 s after)")
    for _ in range(COLD):
        wait_state(d, "cold", "stopped")
        time.sleep(0.05)
        ms, wall = timed_wake(port)
        out.append(ms)
        walls.append(wall)
    a = info(d, "cold")
    events = audit_events(d, "cold")
    log(f"cold wake: {COLD} cycles in {time.monotonic() - t0:.0f} s")
    status, body = d.call("DELETE", "/v1/instances/cold")
    if status != 200:
        raise RuntimeError(f"delete cold: {status} {body}")
    res = {"wake": out, "wakes": a["activity"]["wake_count"] - wakes0, "activity": a["activity"],
           "audit": count(events)}
    # where the time goes, from the audit log of each run after the first:
    # connect -> run.start (the shim's sandbox begins) -> exec of the server
    # (the exec watch) -> first byte
    runs, cur = [], None
    for t, ts in events:
        if t == "run.start":
            cur = {"start": ts}
            runs.append(cur)
        elif t == "exec" and cur is not None and "exec" not in cur:
            cur["exec"] = ts
    runs = runs[1:]
    if len(runs) == COLD and all("exec" in r for r in runs):
        res["split"] = {"to_start": [(r["start"] - w) * 1e3 for r, w in zip(runs, walls)],
                        "start_to_exec": [(r["exec"] - r["start"]) * 1e3 for r in runs],
                        "exec_to_byte": [w * 1e3 + ms - r["exec"] * 1e3 for r, w, ms in zip(runs, walls, out)]}
    return res


def transfer(exe, mode, port):
    r = subprocess.run([exe, mode, "127.0.0.1", str(port), str(NBYTES)], capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"expose_srv {mode} :{port}: exit {r.returncode}: {r.stderr.strip()}")
    got, secs = r.stdout.split()
    head = len(f"HTTP/1.0 200 OK\r\nContent-Length: {NBYTES}\r\n\r\n")
    want = head + NBYTES if mode == "get" else len(ANSWER)
    if int(got) != want:
        raise RuntimeError(f"expose_srv {mode} :{port}: {got} bytes, {want} expected")
    return NBYTES / float(secs) / 1e6


def throughput_part(exe, router_port, host_port):
    out = {(m, w): [] for m in ("get", "put") for w in ("direct", "router")}
    for i in range(XFER_RUNS):
        log(f"throughput: run {i + 1} of {XFER_RUNS}")
        for mode in ("get", "put"):
            out[(mode, "direct")].append(transfer(exe, mode, host_port))
            out[(mode, "router")].append(transfer(exe, mode, router_port))
    return {k: statistics.median(v) for k, v in out.items()}, out


# --- the v1 freezer -------------------------------------------------------------

def frozen_elsewhere(mine):
    """freezer cgroups not THAWED, other than mine and the anchor."""
    out = []
    for root, dirs, files in os.walk(CG_FREEZER):
        if root in (mine, f"{CG_FREEZER}/aegis/anchor") or "freezer.state" not in files:
            continue
        try:
            with open(f"{root}/freezer.state") as f:
                state = f.read().strip()
        except OSError:
            continue
        if state != "THAWED":
            out.append(f"{root[len(CG_FREEZER):] or '/'}: {state}")
    return out


def freezer_cycles(cg):
    """FREEZER cycles: (write FROZEN: the write, until it reads FROZEN),
    (write THAWED: the write, until THAWED), in µs. Left THAWED."""
    knob = f"{cg}/freezer.state"
    res = {"freeze_write": [], "freeze_done": [], "thaw_write": [], "thaw_done": []}

    def one(word, write_key, done_key):
        fd = os.open(knob, os.O_WRONLY)
        try:
            t = time.perf_counter_ns()
            os.write(fd, word.encode())
            res[write_key].append((time.perf_counter_ns() - t) / 1e3)
        finally:
            os.close(fd)
        while True:
            with open(knob) as f:
                if f.read().strip() == word:
                    break
            if time.perf_counter_ns() - t > 5e9:
                raise RuntimeError(f"{knob}: not {word} after 5 s")
            os.sched_yield()
        res[done_key].append((time.perf_counter_ns() - t) / 1e3)

    try:
        for _ in range(FREEZER):
            one("FROZEN", "freeze_write", "freeze_done")
            one("THAWED", "thaw_write", "thaw_done")
            time.sleep(0.002)
    finally:
        with open(knob, "w") as f:
            f.write("THAWED")
    return res


def freezer_part(d):
    shim = info(d, "warm")["shim_pid"]
    cg = f"{CG_FREEZER}/aegis/run-{shim}"
    anchor = f"{CG_FREEZER}/aegis/anchor"
    if not os.path.isdir(cg):
        return None
    out = {}
    if not os.path.isdir(anchor):
        # Every aegisd makes and removes the same anchor: another daemon's
        # stop took ours. A restart makes it again.
        log("freezer: the anchor is gone (another aegisd stopped?): aegis down, aegis up")
        out["anchor_lost"] = True
        restart(d)
    log("freezer: with aegisd running (anchor held)")
    before = os.path.isdir(anchor)
    out["with"] = {"others": frozen_elsewhere(cg), **freezer_cycles(cg)}
    out["with"]["anchor"] = (before, os.path.isdir(anchor))
    log("freezer: after aegis down and the anchor removed, the instance still running")
    subprocess.run([AEGIS, "down"], env=d.env, check=True, capture_output=True, timeout=30)
    try:
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{d.pid}") and time.monotonic() < deadline:
            time.sleep(0.02)
        # aegisd leaves its anchor (other daemons share it): with none
        # running, the bench removes it itself; another aegisd or anything
        # frozen elsewhere keeps the kernel's switch on: wait, else say so
        if not [p for p in pids_with("aegisd --socket") if p != os.getpid()]:
            try:
                os.rmdir(anchor)
            except OSError:
                pass
        deadline = time.monotonic() + ANCHOR_WAIT
        while (os.path.isdir(anchor) or frozen_elsewhere(cg)) and time.monotonic() < deadline:
            time.sleep(0.1)
        before = os.path.isdir(anchor)
        out["without"] = {"others": frozen_elsewhere(cg), **freezer_cycles(cg)}
        out["without"]["anchor"] = (before, os.path.isdir(anchor))
        out["daemons"] = [p for p in pids_with("aegisd --socket") if p != os.getpid()]
    finally:
        up(d)
    return out


def up(d):
    subprocess.run([AEGIS, "up"], env=d.env, check=True, capture_output=True, timeout=30)
    d.pid = next(p for p in pids_with(f"--socket {d.sock}") if p != os.getpid())


def restart(d):
    """aegis down, then up (the instances keep running and are adopted)."""
    subprocess.run([AEGIS, "down"], env=d.env, check=True, capture_output=True, timeout=30)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{d.pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    up(d)


# --- report ----------------------------------------------------------------------

def row(label, s, ref=None):
    """A table row of stats(); with ref, one more cell: the p50's ratio to it
    ("" when ref is 0: a row of a table with that cell, not for this row)."""
    cells = f"| {label} | {s['n']} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} | {s['max']:.2f} |"
    if ref is None:
        return cells
    return cells + (f" {s['p50'] / ref:.2f}× |" if ref else "  |")


def main():
    if os.geteuid() != 0:
        sys.exit("bench: run as root (instances, the cgroup freezer)")
    if not shutil.which("gcc"):
        sys.exit("bench: missing gcc")
    if not os.access(AEGIS, os.X_OK):
        sys.exit(f"bench: no aegis binary at {AEGIS} (set AEGIS_BIN or build it)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)

    tmp = tempfile.mkdtemp(prefix="aegis-bench-expose.")
    try:
        ws = os.path.join(tmp, "ws")
        os.mkdir(ws)
        os.chmod(ws, 0o755)  # the sandbox's user reads and runs the server from it
        exe = os.path.join(ws, "expose_srv")
        cc = ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", exe, os.path.join(HERE, "expose_srv.c")]
        linked = "static"
        if subprocess.run(cc[:1] + ["-static"] + cc[1:], capture_output=True).returncode != 0:
            subprocess.run(cc, check=True)
            linked = "dynamic"
        load0 = os.getloadavg()[0]

        start_port = free_port()
        log(f"server start: {START} runs on the host")
        for _ in range(WARMUPS):
            server_start_ms(exe, start_port)
        start = [server_start_ms(exe, start_port) for _ in range(START)]

        host_port = free_port()
        with HostServer(exe, host_port), Daemon() as d:
            res = resume_part(d, ws, host_port)
            cold = cold_part(d, ws)
            xfer, xfer_all = throughput_part(exe, res["port"], host_port)
            frz = freezer_part(d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("# aegis expose bench (scale to zero)\n")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, kernel {os.uname().release}, "
          f"nproc {os.cpu_count()}, load average {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    print(f"- server: bench/expose_srv.c, {linked}ally linked, from the instance's workspace; "
          f"{WARMUPS} warmups before the baselines\n")

    direct, running, wake = stats(res["direct"]), stats(res["running"]), stats(res["wake"])
    print("### Resume: paused instance to first byte\n")
    print("| subject | n | p50 ms | p90 ms | p99 ms | max ms | p50 ratio to running |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(row("direct: the same server on host loopback", direct, running["p50"]))
    print(row("running instance, through the exposed port", running, running["p50"]))
    print(row("**paused instance, through the exposed port (wake)**", wake, running["p50"]))
    print(row("API POST /pause (until answered; before each wake)", stats(res["pause"]), 0))
    print(row("API POST /resume alone (until answered)", stats(res["api_resume"]), 0))
    print(row("first byte after an API resume", stats(res["after_api_resume"]), running["p50"]))
    a, au = res["activity"], res["audit"]
    if "split" in res:
        sp = res["split"]
        print(f"| ↳ connect until the instance.wake audit event (thaw, state files, event) | {RESUME} | "
              f"{pct(sp['to_event'], 50):.2f} | {pct(sp['to_event'], 90):.2f} | {pct(sp['to_event'], 99):.2f} | "
              f"{max(sp['to_event']):.2f} |  |")
        print(f"| ↳ that event until the first byte (connection made in the instance, relay) | {RESUME} | "
              f"{pct(sp['event_to_byte'], 50):.2f} | {pct(sp['event_to_byte'], 90):.2f} | "
              f"{pct(sp['event_to_byte'], 99):.2f} | {max(sp['event_to_byte']):.2f} |  |")
    print(f"\n- wakes counted: {res['wakes']} of {RESUME}; state after: {res['state_after']}; "
          f"info activity after the cycles: wake_count {a['wake_count']}, paused_s {a['paused_s']}")
    print(f"- audit log over the {RESUME} API pauses and wakes: {au.get('instance.pause', 0)} instance.pause, "
          f"{au.get('instance.wake', 0)} instance.wake")
    print(f"- resume p50 ≤ {TARGET_RESUME_MS:g} ms: {wake['p50']:.2f} ms (p99 {wake['p99']:.2f} ms) → "
          f"**{'met' if wake['p50'] <= TARGET_RESUME_MS else 'missed'}**; AegisVM's published resume "
          f"~{AEGISVM_RESUME_MS:g} ms is {AEGISVM_RESUME_MS / wake['p50']:.1f}× the p50; "
          f"the wake adds {wake['p50'] - running['p50']:.2f} ms to a request to a running instance\n")

    st, cw = stats(start), stats(cold["wake"])
    print("### Cold wake: stopped instance to first byte\n")
    print("| subject | n | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    print(row("the server's own start on the host (exec to first byte)", st))
    print(row("**stopped instance, through the exposed port (wake)**", cw))
    print(f"| wake minus the server's own start | | {cw['p50'] - st['p50']:.2f} | | {cw['p99'] - st['p99']:.2f} | |")
    for key, label in (("to_start", "↳ connect until run.start in the audit log (daemon, shim start)"),
                       ("start_to_exec", "↳ run.start until the server's exec (sandbox setup)"),
                       ("exec_to_byte", "↳ the server's exec until the first byte (server start, router retries)")):
        if "split" in cold:
            print(row(label, stats(cold["split"][key])))
    b, au = cold["activity"], cold["audit"]
    print(f"\n- wakes counted: {cold['wakes']} of {COLD}; info activity: wake_count {b['wake_count']}, "
          f"paused_s {b['paused_s']}, stopped_s {b['stopped_s']}")
    print(f"- audit log: {au.get('run.start', 0)} run.start (the first start included), "
          f"{au.get('instance.pause', 0)} instance.pause, {au.get('instance.stop', 0)} instance.stop, "
          f"{au.get('instance.wake', 0)} instance.wake")
    extra = cw["p50"] - st["p50"]
    print(f"- cold wake ≤ {TARGET_COLD_MS:g} ms + the server's own start: {cw['p50']:.2f} − {st['p50']:.2f} = "
          f"{extra:.2f} ms at p50 → **{'met' if extra <= TARGET_COLD_MS else 'missed'}**; AegisVM's "
          f"published cold boot ~{AEGISVM_BOOT_MS:g} ms is {AEGISVM_BOOT_MS / cw['p50']:.1f}× the p50\n")

    print(f"### Throughput, {NBYTES / (1 << 20):.0f} MiB, MB/s (median of {XFER_RUNS})\n")
    print("| direction | direct (host loopback) | through the exposed port | ratio | all runs, router |")
    print("|---|---:|---:|---:|---|")
    for mode, label in (("get", "download (server → client)"), ("put", "upload (client → server)")):
        dd, rr = xfer[(mode, "direct")], xfer[(mode, "router")]
        runs = ", ".join(f"{v:.0f}" for v in xfer_all[(mode, "router")])
        print(f"| {label} | {dd:.0f} | {rr:.0f} | {rr / dd * 100:.0f}% | {runs} |")
    print()
    for mode, label in (("get", "download"), ("put", "upload")):
        r = xfer[(mode, "router")] / xfer[(mode, "direct")]
        print(f"- {label} ≥ {TARGET_XFER:.0%} of direct: {r:.0%} → **{'met' if r >= TARGET_XFER else 'missed'}**")
    print()

    print("### v1 freezer write, µs\n")
    if not frz:
        print("- not measured: the instance has no v1 freezer cgroup (cgroup v2, or another parent)\n")
        return
    print("| aegisd | anchor present, before / after | other frozen cgroups | write FROZEN p50 / p99 | until FROZEN p50 / p99 | "
          "write THAWED p50 / p99 | until THAWED p50 / p99 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for key, label in (("with", "running"), ("without", "stopped (`aegis down`)")):
        f = frz[key]
        cells = " | ".join(f"{pct(f[k], 50):.1f} / {pct(f[k], 99):.1f}"
                           for k in ("freeze_write", "freeze_done", "thaw_write", "thaw_done"))
        yn = " / ".join("yes" if a else "no" for a in f["anchor"])
        print(f"| {label} | {yn} | {len(f['others'])} | {cells} |")
    print(f"\n- {FREEZER} cycles each on the running instance's freezer.state (its server idle)")
    if frz.get("anchor_lost"):
        print("- the anchor was gone before the first row (another aegisd on this machine stopped and "
              "removed it): aegisd restarted to make it again")
    for key in ("with", "without"):
        for o in frz[key]["others"]:
            print(f"- {key} the anchor: also not thawed: `{o}`")
    if frz["without"]["anchor"][0] or frz["without"]["others"]:
        print(f"- **the second row is not a measurement without the anchor**: after {ANCHOR_WAIT:g} s another "
              f"aegisd's anchor (the same path for every daemon) or another frozen cgroup was still there; "
              f"aegisd processes running then: {len(frz['daemons'])}")


if __name__ == "__main__":
    main()
