#!/usr/bin/env python3
"""bench/instances.py: exec latency, memory per instance and 500 instances at
once, side by side with runc and bwrap, in one run. Prints markdown tables.

1. Exec into a running instance (`sleep infinity`): `aegis exec N -- true`
   (CLI round trip, spawn to reap) and the JSON API exec of `true`, against
   `runc exec CID /bin/true` into a running `runc run -d` container whose
   rootfs holds `sleep`, `true` and their libraries (as bench/run.sh builds
   it). Floors: plain /bin/true and GET /v1/health. p50/p90/p99/max.
2. Memory: aegisd's RSS/PSS (/proc/PID/smaps_rollup) with 0 and with 200
   idle instances; per instance the PSS of the shim and of the processes in
   the instance plus what its memory cgroup holds that no process maps; the
   same for 200 `bwrap ... sleep infinity`, each put in a memory cgroup of
   its own; and the kernel's memory system-wide (/proc/meminfo), which also
   holds what is not charged to the sandbox's cgroup.
3. 500 instances created at once through the API (500 threads released
   together), time until all answered and all running, then 500 deletes at
   once; the same with 500 concurrent `aegis instance start` and `aegis
   instance delete`; and through the API 32 at a time (under aegisd's
   connection limit of 64). Failures are counted and printed as they came
   (HTTP status and body, the socket error, or the CLI's exit status and
   stderr), never retried, with aegisd's log lines other than info.

Run as root: python3 bench/instances.py. Env: AEGIS_BIN (default
build/aegis; aegisd is taken next to it), BENCH_RUNS (200), BENCH_WARMUPS
(10), BENCH_IDLE (200), BENCH_BWRAP (200), BENCH_PARALLEL (500).
Everything it starts (instances, daemons, the runc container, bwraps, the
cgroups it makes) is removed on the way out, failures included."""
import collections
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AEGIS = os.environ.get("AEGIS_BIN", os.path.join(ROOT, "build", "aegis"))
RUNS = int(os.environ.get("BENCH_RUNS", "200"))
WARMUPS = int(os.environ.get("BENCH_WARMUPS", "10"))
N_IDLE = int(os.environ.get("BENCH_IDLE", "200"))
N_BWRAP = int(os.environ.get("BENCH_BWRAP", "200"))
N_PARALLEL = int(os.environ.get("BENCH_PARALLEL", "500"))
CG_MEMORY = "/sys/fs/cgroup/memory"
BWRAP = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev",
         "--proc", "/proc", "--tmpfs", "/tmp"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --- HTTP/1.1 over the unix socket -------------------------------------------

def api(sock, method, path, body=None, timeout=120):
    """One request on a new connection ("Connection: close"): (status, body
    bytes). Socket errors are raised as they come."""
    data = json.dumps(body).encode() if body is not None else b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: aegisd\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(sock)
        s.sendall(head.encode() + data)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    raw = b"".join(chunks)
    if not raw:
        raise ConnectionError("connection closed with no response")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    if any(h.lower().replace(" ", "") == "transfer-encoding:chunked" for h in lines[1:]):
        out = b""
        while body:
            size, _, rest = body.partition(b"\r\n")
            n = int(size.split(b";")[0], 16)
            if n == 0:
                break
            out, body = out + rest[:n], rest[n + 2:]
        body = out
    return status, body


# --- /proc and cgroup readings -----------------------------------------------

def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def pids_with(text):
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and text in cmdline(p)]


def parents():
    """pid -> ppid of every process."""
    out = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    out[int(p)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    return out


def tree(pid, ppids):
    """pid and all its descendants."""
    kids = collections.defaultdict(list)
    for p, pp in ppids.items():
        kids[pp].append(p)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids[p])
    return out


def smaps(pid):
    """smaps_rollup of pid in KiB (Rss, Pss, Pss_Anon, Anonymous, ...)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith("Threads:")))


def cgroup_memory(path):
    """A v1 memory cgroup's counters in bytes: usage, kmem, and memory.stat."""
    with open(f"{path}/memory.stat") as f:
        out = {k: int(v) for k, v in (line.split() for line in f)}
    for name in ("usage_in_bytes", "kmem.usage_in_bytes"):
        with open(f"{path}/memory.{name}") as f:
            out[name] = int(f.read())
    with open(f"{path}/cgroup.procs") as f:
        out["procs"] = [int(p) for p in f.read().split()]
    return out


def kernel_kib():
    """The kernel's own memory, system-wide, from /proc/meminfo: Slab +
    KernelStack + PageTables + Percpu (what a memory cgroup counts as kmem,
    wherever it is charged). Anything else running moves it too, but far
    less than the anonymous memory or the page cache."""
    with open("/proc/meminfo") as f:
        m = {line.split(":")[0]: int(line.split()[1]) for line in f}
    return m["Slab"] + m["KernelStack"] + m["PageTables"] + m["Percpu"]


def settle():
    """Let RCU-freed objects go before a kernel_kib() reading."""
    os.sync()
    time.sleep(2)


# --- timing -------------------------------------------------------------------

def spawn_ms(argv, env, errlog):
    """Wall time of one run of argv, posix_spawn to reap (as timeit.c does),
    stdio on /dev/null except stderr, which goes to errlog."""
    actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
               (os.POSIX_SPAWN_OPEN, 2, errlog, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)]
    t = time.perf_counter_ns()
    pid = os.posix_spawnp(argv[0], argv, env, file_actions=actions)
    _, status = os.waitpid(pid, 0)
    ms = (time.perf_counter_ns() - t) / 1e6
    if status != 0:
        with open(errlog, errors="replace") as f:
            raise RuntimeError(f"{' '.join(argv)}: wait status {status}: {f.read()[-2000:]}")
    return ms


def pct(samples, p):
    """Nearest-rank percentile."""
    s = sorted(samples)
    return s[max(0, -(-len(s) * p // 100) - 1)]


def timed(fn):
    for _ in range(WARMUPS):
        fn()
    return [fn() for _ in range(RUNS)]


# --- subjects ----------------------------------------------------------------

class Daemon:
    """aegisd on a private socket and state dir, started with `aegis up`. On
    the way out: every instance deleted, `aegis down`, and anything left
    that runs from this state dir killed."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="aegis-bench-inst.")
        self.sock = os.path.join(self.dir, "run", "aegisd.sock")
        self.env = dict(os.environ, AEGIS_SOCKET=self.sock, AEGIS_STATE_DIR=os.path.join(self.dir, "state"))
        self.pid = None
        self.shims = set()

    def __enter__(self):
        try:
            subprocess.run([AEGIS, "up"], env=self.env, check=True, capture_output=True, timeout=30)
            self.pid = next(p for p in pids_with(f"--socket {self.sock}") if p != os.getpid())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def call(self, method, path, body=None):
        status, raw = api(self.sock, method, path, body)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def instances(self):
        status, body = self.call("GET", "/v1/instances")
        if status != 200:
            raise RuntimeError(f"GET /v1/instances: {status} {body}")
        items = body["instances"] if isinstance(body, dict) else body
        for i in items:
            if i.get("shim_pid"):
                self.shims.add(i["shim_pid"])
        return items

    def create(self, name, argv):
        return self.call("POST", "/v1/instances", {"name": name, "argv": argv})

    def wait_running(self, names, timeout=300):
        """Poll the list until every name is running; returns {name: state}
        of those that are not when it gives up."""
        names, deadline = set(names), time.monotonic() + timeout
        while True:
            states = {i["name"]: i["state"] for i in self.instances() if i["name"] in names}
            left = {n: states.get(n, "absent") for n in names if states.get(n) != "running"}
            if not left or time.monotonic() > deadline:
                return left
            if any(s not in ("starting", "absent") for s in left.values()):
                return left
            time.sleep(0.02)

    def __exit__(self, *exc):
        try:
            names = [i["name"] for i in self.instances()]
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda n: self.call("DELETE", f"/v1/instances/{n}"), names))
        except Exception as e:  # noqa: BLE001 - the kill below still runs
            log(f"cleanup: deleting instances: {e!r}")
        subprocess.run([AEGIS, "down"], env=self.env, capture_output=True, timeout=30)
        deadline = time.monotonic() + 10
        while self.pid and os.path.exists(f"/proc/{self.pid}") and time.monotonic() < deadline:
            time.sleep(0.02)
        # Whatever still runs from this state dir (daemon, shims, their trees).
        ppids = parents()
        left = {q for p in pids_with(self.dir) if p != os.getpid() for q in tree(p, ppids)}
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if left:
            log(f"cleanup: killed {len(left)} leftover process(es)")
            time.sleep(0.5)
            for shim in self.shims & left:  # their cgroups, now empty
                for ctl in os.listdir("/sys/fs/cgroup"):
                    cg = f"/sys/fs/cgroup/{ctl}/aegis/run-{shim}"
                    if os.path.isdir(cg):
                        try:
                            os.rmdir(cg)
                        except OSError as e:
                            log(f"cleanup: {cg}: {e}")
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_lines(self):
        """aegisd's log lines other than info, counted (text up to 200)."""
        out = collections.Counter()
        try:
            with open(os.path.join(self.dir, "run", "aegisd.log"), errors="replace") as f:
                for line in f:
                    try:
                        j = json.loads(line)
                        if j.get("level") == "info":
                            continue
                        j.pop("ts", None)
                        line = json.dumps(j)
                    except ValueError:
                        pass
                    out[line.strip()[:200]] += 1
        except OSError:
            pass
        return out


class Runc:
    """A `runc run -d` container running /bin/sleep infinity from a rootfs of
    sleep, true and their libraries; default `runc spec` otherwise."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="aegis-bench-runc.")
        self.id = f"aegis-bench-exec-{os.getpid()}"

    def __enter__(self):
        try:
            rootfs = os.path.join(self.dir, "rootfs")
            os.makedirs(os.path.join(rootfs, "bin"))
            for b in ("true", "sleep"):
                shutil.copy(f"/bin/{b}", os.path.join(rootfs, "bin", b))
                libs = subprocess.run(["ldd", f"/bin/{b}"], capture_output=True, text=True, check=True).stdout
                for lib in (w for w in libs.split() if w.startswith("/")):
                    dst = rootfs + lib
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    shutil.copy(lib, dst)
            subprocess.run(["runc", "spec"], cwd=self.dir, check=True)
            cfg_path = os.path.join(self.dir, "config.json")
            with open(cfg_path) as f:
                cfg = json.load(f)
            cfg["process"]["terminal"] = False
            cfg["process"]["args"] = ["/bin/sleep", "infinity"]
            with open(cfg_path, "w") as f:
                json.dump(cfg, f)
            subprocess.run(["runc", "run", "-d", "--bundle", self.dir, self.id], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        subprocess.run(["runc", "delete", "-f", self.id], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class Bwraps:
    """n idle `bwrap ... sleep infinity`, each in a v1 memory cgroup of its
    own (joined before bwrap runs, so what its namespaces and mounts cost
    the kernel is charged there)."""

    def __init__(self, n):
        self.n = n
        self.cg = f"{CG_MEMORY}/aegis-bench-bwrap-{os.getpid()}"
        self.procs = []

    def __enter__(self):
        try:
            os.mkdir(self.cg)
            for i in range(self.n):
                cg = f"{self.cg}/{i}"
                os.mkdir(cg)
                self.procs.append(subprocess.Popen(
                    BWRAP + ["sleep", "infinity"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, preexec_fn=lambda cg=cg: self._join(cg)))
            deadline = time.monotonic() + 30
            while not all(self.sleep_started(p.pid) for p in self.procs):
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                    raise RuntimeError("bwrap sandboxes did not all start")
                time.sleep(0.05)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @staticmethod
    def _join(cg):
        with open(f"{cg}/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))

    @staticmethod
    def sleep_started(pid):
        ppids = parents()
        return any(cmdline(p).startswith("sleep ") for p in tree(pid, ppids))

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        if not os.path.isdir(self.cg):
            return
        # Anything still in our cgroups is ours (a bwrap whose Popen was
        # interrupted, its children): kill it, then remove the cgroups.
        deadline = time.monotonic() + 10
        for i in range(self.n):
            cg = f"{self.cg}/{i}"
            while os.path.isdir(cg):
                try:
                    os.rmdir(cg)
                except OSError:
                    try:
                        with open(f"{cg}/cgroup.procs") as f:
                            for pid in f.read().split():
                                os.kill(int(pid), signal.SIGKILL)
                    except (OSError, ValueError):
                        pass
                    if time.monotonic() > deadline:
                        log(f"cleanup: cannot remove {cg}")
                        break
                    time.sleep(0.05)
        try:
            os.rmdir(self.cg)
        except OSError as e:
            log(f"cleanup: {self.cg}: {e}")


# --- 1. exec latency -------------------------------------------------------

def exec_latency():
    rows = []
    fd, errlog = tempfile.mkstemp(prefix="aegis-bench-err.")
    os.close(fd)
    try:
        with Daemon() as d, Runc() as rc:
            status, body = d.create("x", ["sleep", "infinity"])
            if status != 201 or d.wait_running(["x"]):
                raise RuntimeError(f"instance x did not start: {status} {body}")

            def api_exec():
                t = time.perf_counter_ns()
                status, raw = api(d.sock, "POST", "/v1/instances/x/exec", {"argv": ["true"]})
                ms = (time.perf_counter_ns() - t) / 1e6
                if status != 200 or json.loads(raw)["exit_code"] != 0:
                    raise RuntimeError(f"API exec: {status} {raw[:500]!r}")
                return ms

            def health():
                t = time.perf_counter_ns()
                status, _ = api(d.sock, "GET", "/v1/health")
                ms = (time.perf_counter_ns() - t) / 1e6
                if status != 200:
                    raise RuntimeError(f"health: {status}")
                return ms

            subjects = [
                ("`aegis exec x -- true` (CLI)", lambda: spawn_ms([AEGIS, "exec", "x", "--", "true"], d.env, errlog)),
                ("API exec of `true` (JSON, one connection)", api_exec),
                ("`runc exec CID /bin/true`", lambda: spawn_ms(["runc", "exec", rc.id, "/bin/true"], os.environ, errlog)),
                ("floor: `/bin/true` on the host", lambda: spawn_ms(["/bin/true"], os.environ, errlog)),
                ("floor: API `GET /v1/health`", health),
            ]
            for name, fn in subjects:
                log(f"exec latency: {name}")
                rows.append((name, timed(fn)))
    finally:
        if os.path.exists(errlog):
            os.unlink(errlog)
    return rows


# --- 2. memory -------------------------------------------------------------

def per_sandbox(sandboxes):
    """Means over sandboxes, each (root pid, its memory cgroup): PSS of the
    root's process tree split by inside/outside the cgroup, and the
    cgroup's counters (KiB)."""
    ppids = parents()
    per = collections.Counter()
    nprocs = collections.Counter()
    for root, path in sandboxes:
        cg = cgroup_memory(path)
        procs = tree(root, ppids)
        nprocs[len(procs)] += 1
        for p in procs:
            per["pss_in" if p in cg["procs"] else "pss_out"] += smaps(p)["Pss"]
        per["usage"] += cg["usage_in_bytes"] / 1024
        per["anon"] += cg["rss"] / 1024
        per["mapped"] += cg["mapped_file"] / 1024
        per["kmem"] += cg["kmem.usage_in_bytes"] / 1024
    out = {k: per[k] / len(sandboxes) for k in ("pss_in", "pss_out", "usage", "anon", "mapped", "kmem")}
    out["procs"] = ", ".join(f"{k} ({v}×)" for k, v in sorted(nprocs.items()))
    return out


def aegis_memory():
    """aegisd at 0 and N_IDLE instances, and the per-instance figures."""
    with Daemon() as d:
        time.sleep(0.5)
        d0 = dict(smaps(d.pid), threads=threads(d.pid))
        settle()
        kern0 = kernel_kib()
        names = [f"idle{i}" for i in range(N_IDLE)]
        log(f"memory: starting {N_IDLE} idle instances")
        for n in names:
            status, body = d.create(n, ["sleep", "infinity"])
            if status != 201:
                raise RuntimeError(f"create {n}: {status} {body}")
        left = d.wait_running(names)
        if left:
            raise RuntimeError(f"not running: {dict(list(left.items())[:10])}")
        settle()
        kern1 = kernel_kib()
        d1 = dict(smaps(d.pid), threads=threads(d.pid))
        per = per_sandbox([(i["shim_pid"], f"{CG_MEMORY}/aegis/run-{i['shim_pid']}") for i in d.instances()])
        log(f"memory: deleting {N_IDLE} idle instances")
        for n in names:
            status, body = d.call("DELETE", f"/v1/instances/{n}")
            if status != 200:
                raise RuntimeError(f"delete {n}: {status} {body}")
        settle()
        kern2 = kernel_kib()
    per["rise"] = (kern1 - kern0) / N_IDLE
    per["fall"] = (kern1 - kern2) / N_IDLE
    return d0, d1, per


def bwrap_memory():
    settle()
    kern0 = kernel_kib()
    log(f"memory: starting {N_BWRAP} bwrap sandboxes")
    with Bwraps(N_BWRAP) as b:
        settle()
        kern1 = kernel_kib()
        per = per_sandbox([(p.pid, f"{b.cg}/{i}") for i, p in enumerate(b.procs)])
    settle()
    kern2 = kernel_kib()
    per["rise"] = (kern1 - kern0) / N_BWRAP
    per["fall"] = (kern1 - kern2) / N_BWRAP
    return per


# --- 3. many at once -----------------------------------------------------------

def describe(status, body):
    if isinstance(body, dict) and "error" in body:
        e = body["error"]
        return f"HTTP {status}: {e.get('code')}: {e.get('message')}"
    return f"HTTP {status}: {str(body)[:200]}"


def concurrently(n, fn, width):
    """fn(i) for i in range(n). width None: n threads released together by
    a barrier; else a pool of width threads. Returns (start time, wall
    seconds until the last returned, [(ok, error text, seconds)])."""
    barrier = threading.Barrier(n + 1) if width is None else None

    def one(i):
        if barrier:
            barrier.wait()
        t = time.perf_counter()
        try:
            ok, err = fn(i)
        except Exception as e:  # noqa: BLE001 - recorded as it came
            ok, err = False, f"{type(e).__name__}: {e}"
        return ok, err, time.perf_counter() - t

    with concurrent.futures.ThreadPoolExecutor(width or n) as pool:
        t0 = time.perf_counter()
        futs = [pool.submit(one, i) for i in range(n)]
        if barrier:
            barrier.wait()
            t0 = time.perf_counter()
        results = [f.result() for f in futs]
    return t0, time.perf_counter() - t0, results


def parallel(via, width=None):
    """N_PARALLEL creates (API or CLI) all at once or width at a time, until
    all are running; then as many deletes the same way. A dict of figures,
    the errors as they came and aegisd's log lines other than info."""
    n = N_PARALLEL
    names = [f"p{i:03d}" for i in range(n)]
    out = {"label": f"{via}, {'all at once' if width is None else f'{width} at a time'}"}
    with Daemon() as d:
        log(f"parallel: {n} creates via {out['label']}")

        def cli(*args):
            r = subprocess.run([AEGIS, "instance", *args], env=d.env, capture_output=True, text=True)
            return r.returncode == 0, None if r.returncode == 0 else f"exit {r.returncode}: {r.stderr.strip()}"

        def http(method, path, body, want):
            status, answer = d.call(method, path, body)
            return status == want, None if status == want else describe(status, answer)

        if via == "API":
            def create(i):
                return http("POST", "/v1/instances", {"name": names[i], "argv": ["sleep", "infinity"]}, 201)
        else:
            def create(i):
                return cli("start", "--name", names[i], "--", "sleep", "infinity")
        t0, out["create_s"], res = concurrently(n, create, width)
        out["create_p50"] = pct([r[2] for r in res], 50)
        out["create_p99"] = pct([r[2] for r in res], 99)
        out["create_errors"] = collections.Counter(r[1] for r in res if not r[0])
        created = [names[i] for i, r in enumerate(res) if r[0]]
        left = d.wait_running(created)
        out["running_s"] = time.perf_counter() - t0
        out["not_running"] = collections.Counter(left.values())
        out["running"] = len(created) - len(left)
        listed = [i["name"] for i in d.instances()]

        log(f"parallel: {len(listed)} deletes via {out['label']}")
        if via == "API":
            def delete(i):
                return http("DELETE", f"/v1/instances/{listed[i]}", None, 200)
        else:
            def delete(i):
                return cli("delete", listed[i])
        if listed:
            _, out["delete_s"], res = concurrently(len(listed), delete, width)
            out["delete_p50"] = pct([r[2] for r in res], 50)
            out["delete_p99"] = pct([r[2] for r in res], 99)
            out["delete_errors"] = collections.Counter(r[1] for r in res if not r[0])
        out["to_delete"] = len(listed)
        out["deleted"] = len(listed) - sum(out.get("delete_errors", {}).values())
        out["left_after_delete"] = len(d.instances())
        out["daemon_log"] = d.log_lines()
    return out


# --- report ------------------------------------------------------------------

def main():
    if os.geteuid() != 0:
        sys.exit("bench: run as root (runc, cgroups)")
    for tool in ("runc", "bwrap", "ldd"):
        if not shutil.which(tool):
            sys.exit(f"bench: missing {tool} (scripts/deps.sh bench installs the peers)")
    if not os.access(AEGIS, os.X_OK):
        sys.exit(f"bench: no aegis binary at {AEGIS} (set AEGIS_BIN or build it)")

    # SIGTERM, and SIGINT even when started in the background, unwind
    # through the cleanups instead of leaving instances and daemons behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    load0 = os.getloadavg()[0]
    lat = exec_latency()
    d0, d1, amem = aegis_memory()
    bmem = bwrap_memory()
    par = [parallel("API"), parallel("CLI"), parallel("API", 32)]

    print("# aegisd instances bench\n")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, kernel {os.uname().release}, "
          f"nproc {os.cpu_count()}, load average {load0:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end")
    print(f"- exec: {RUNS} timed runs per subject after {WARMUPS} warmups\n")

    print("### Exec into a running instance\n")
    print("| subject | p50 ms | p90 ms | p99 ms | max ms | p50 ratio to aegis CLI |")
    print("|---|---:|---:|---:|---:|---:|")
    cli50 = pct(lat[0][1], 50)
    for name, s in lat:
        print(f"| {name} | {pct(s, 50):.2f} | {pct(s, 90):.2f} | {pct(s, 99):.2f} | {max(s):.2f} | "
              f"{pct(s, 50) / cli50:.2f}× |")
    print(f"\n- `aegis exec` CLI p50 ≤ 5 ms: {cli50:.2f} ms → **{'met' if cli50 <= 5 else 'missed'}**\n")

    print("### aegisd memory (smaps_rollup)\n")
    print("| aegisd | Rss KiB | Pss KiB | Anonymous KiB | threads |")
    print("|---|---:|---:|---:|---:|")
    for label, m in (("0 instances", d0), (f"{N_IDLE} idle instances", d1)):
        print(f"| {label} | {m['Rss']} | {m['Pss']} | {m['Anonymous']} | {m['threads']} |")
    print()

    print("### Per idle sandbox (`sleep infinity`), KiB\n")
    print("| subject | sandboxes | processes each | PSS outside its cgroup | PSS inside | "
          "cgroup: tmpfs, cache not mapped | cgroup: kmem | **PSS + cgroup** | "
          "kernel system-wide, rise / fall | PSS + tmpfs + kernel system-wide |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    totals = {}
    for label, n, m in (("aegis instance", N_IDLE, amem), ("bwrap", N_BWRAP, bmem)):
        cache = m["usage"] - m["anon"] - m["mapped"] - m["kmem"]
        pss = m["pss_out"] + m["pss_in"]
        totals[label] = pss + cache + m["kmem"]
        print(f"| {label} | {n} | {m['procs']} | {m['pss_out']:.0f} | {m['pss_in']:.0f} | {cache:.0f} | "
              f"{m['kmem']:.0f} | **{totals[label]:.0f}** | {m['rise']:.0f} / {m['fall']:.0f} | "
              f"{pss + cache + (m['rise'] + m['fall']) / 2:.0f} |")
    a, b = totals["aegis instance"], totals["bwrap"]
    print(f"\n- aegis per instance ≤ 1 MiB (1024 KiB), PSS + cgroup: {a:.0f} KiB → "
          f"**{'met' if a <= 1024 else 'missed'}** ({a / b:.2f}× bwrap's {b:.0f} KiB)")
    print(f"- shim PSS + memory.usage_in_bytes of the instance cgroup: {amem['pss_out'] + amem['usage']:.0f} KiB")
    print(f"- aegisd's anonymous memory grows by {(d1['Anonymous'] - d0['Anonymous']) / N_IDLE:.1f} KiB "
          f"per instance\n")

    print(f"### {N_PARALLEL} instances at once\n")
    print("| creates, deletes | creates answered s | create p50 / p99 s | all running s | running | "
          "deletes answered s | delete p50 / p99 s | deleted | left after |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in par:
        print(f"| {p['label']} | {p['create_s']:.2f} | {p['create_p50']:.2f} / {p['create_p99']:.2f} | "
              f"{p['running_s']:.2f} | {p['running']} / {N_PARALLEL} | {p.get('delete_s', 0):.2f} | "
              f"{p.get('delete_p50', 0):.2f} / {p.get('delete_p99', 0):.2f} | {p['deleted']} / {p['to_delete']} | "
              f"{p['left_after_delete']} |")
    print()
    for p in par:
        for what in ("create_errors", "not_running", "delete_errors", "daemon_log"):
            for err, count in sorted(p.get(what, {}).items(), key=lambda kv: -kv[1]):
                print(f"- {p['label']}, {what.replace('_', ' ')}: {count}× `{err}`")


if __name__ == "__main__":
    main()
