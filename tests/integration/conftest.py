"""Shared fixtures for the integration tests: they drive the real binaries.

AEGIS_BIN   path of the aegis binary under test (default: build/aegis)
AEGIS_PROBE path of the hostile probe binary (default: build/tests/probe/aegis-probe)
AEGIS_TEST_BACKEND  vm: sandboxed() (and so probe_inside()) runs with
            `--backend vm`, to rerun the run suites inside guests (set
            AEGIS_VM_ACCEL=tcg where KVM does not work); tests meaningless
            there carry @not_in_vm and are skipped then, and only then;
            AEGIS_BACKEND=vm is set for every aegis and aegisd started, so
            instances and direct `aegis run`s are in guests too
"""
import contextlib
import glob
import http.server
import json
import os
import pty
import select
import socket
import subprocess
import tempfile
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _path(env, default):
    return os.path.abspath(os.environ.get(env, os.path.join(ROOT, default)))


AEGIS = _path("AEGIS_BIN", "build/aegis")
PROBE = _path("AEGIS_PROBE", "build/tests/probe/aegis-probe")


def run(args, input=None, timeout=60, **kw):
    """Run a command, capture output as text, never raise on exit status."""
    return subprocess.run(args, input=input, capture_output=True, text=True,
                          timeout=timeout, **kw)


def file_data(path):
    """A file's bytes for a scan (is a secret anywhere on disk?): all of
    them, but of a sparse file only its data extents, the rest being holes
    (zeros). The vm backend's block slot is 64 GiB of holes (src/vm/erofs.c)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 1 << 30:
            return f.read()
        chunks, off = [], 0
        while off < size:
            try:
                start = os.lseek(f.fileno(), off, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(f.fileno(), start, os.SEEK_HOLE)
            f.seek(start)
            chunks.append(f.read(end - start))
            off = end
        return b"".join(chunks)


def aegis(*args, **kw):
    """`aegis ARGS...` → CompletedProcess."""
    return run([AEGIS, *args], **kw)


TEST_BACKEND = os.environ.get("AEGIS_TEST_BACKEND", "ns")
assert TEST_BACKEND in ("ns", "vm"), f"AEGIS_TEST_BACKEND={TEST_BACKEND} is neither ns nor vm"
if TEST_BACKEND == "vm":
    # every aegis and aegisd the tests start: runs not made by sandboxed()
    # and instances (CLI and API) are in guests too
    os.environ["AEGIS_BACKEND"] = "vm"

# For a test that means nothing in a guest (it checks the host kernel's own
# namespace plumbing, an instance, an image root...): skipped only when
# AEGIS_TEST_BACKEND=vm, and the skip says so.
# How much longer waits may take in a TCG guest (emulated CPU, a boot or
# restore per instance start) than on the host: the tests' own deadlines
# are multiplied by it, never what they assert about limits.
SLOW = 6 if TEST_BACKEND == "vm" else 1

not_in_vm = pytest.mark.skipif(TEST_BACKEND == "vm", reason="AEGIS_TEST_BACKEND=vm: not meaningful in a guest")


def sandboxed(*argv, opts=(), **kw):
    """`aegis run OPTS -- ARGV...` → CompletedProcess (in a guest when
    AEGIS_TEST_BACKEND=vm; a boot costs seconds, so the timeout grows)."""
    if TEST_BACKEND == "vm":
        kw["timeout"] = max(kw.get("timeout", 60), 180)
        return run([AEGIS, "run", "--backend", "vm", *opts, "--", *argv], **kw)
    return run([AEGIS, "run", *opts, "--", *argv], **kw)


def probe_inside(name, *args, opts=(), **kw):
    """Run one probe inside a sandbox; the probe binary is mounted read-only at /workspace."""
    return sandboxed("/workspace/" + os.path.basename(PROBE), name, *args,
                     opts=("--workspace-ro", os.path.dirname(PROBE), *opts), **kw)


def probe_outside(name, *args, **kw):
    """The same probe on the host: the native baseline that proves the probe works."""
    return run([PROBE, name, *args], **kw)


@contextlib.contextmanager
def http_server(body=b"hello from the host\n"):
    """An HTTP server on host loopback: the stand-in for the internet."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="session", autouse=True)
def _binaries_exist():
    assert os.access(AEGIS, os.X_OK), f"aegis binary missing: {AEGIS} (run make first)"


@pytest.fixture
def daemon_env():
    """An environment for a private aegisd: its socket and state dir in a
    temp dir (never the real ones). After the test its instances are
    deleted, the daemon stopped and the dir removed."""
    d = tempfile.mkdtemp(prefix="aegis-daemon-")
    env = dict(os.environ, AEGIS_SOCKET=os.path.join(d, "run", "aegisd.sock"),
               AEGIS_STATE_DIR=os.path.join(d, "state"))
    env.pop("AEGIS_FAULT", None)
    yield env
    env.pop("AEGIS_FAULT", None)
    idir = os.path.join(d, "state", "instances")
    names = os.listdir(idir) if os.path.isdir(idir) else []
    shims = [_shim_pid(os.path.join(idir, name)) for name in names]
    for name in names:
        run([AEGIS, "instance", "delete", name], env=env)
    # A delete the CLI gave up waiting for (a loaded machine) goes on in
    # the daemon: give it time before the daemon stops. Whatever is left
    # then would run on in every later test's process list: killed, the
    # shim and all its run's cgroup holds.
    deadline = time.monotonic() + 30
    while (alive := [pid for pid in shims if _shim_of(pid, d)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    run([AEGIS, "down"], env=env)
    for pid in alive:
        for procs in glob.glob(f"/sys/fs/cgroup/*/aegis/run-{pid}/**/cgroup.procs", recursive=True) + \
                glob.glob(f"/sys/fs/cgroup/aegis/run-{pid}/**/cgroup.procs", recursive=True):
            with contextlib.suppress(OSError, ValueError):
                for p in open(procs).read().split():
                    os.kill(int(p), 9)
        if _shim_of(pid, d):
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
    subprocess.run(["rm", "-rf", d])


def _shim_of(pid, d):
    """pid is alive and a shim of the daemon dir d."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return pid > 0 and d.encode() in f.read()
    except OSError:
        return False


def _shim_pid(instance_dir):
    try:
        with open(os.path.join(instance_dir, "shim.json")) as f:
            return int(json.load(f)["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def api(env, method, path, body=b"", timeout=30):
    """One raw HTTP/1.1 request on env's daemon socket → (status, JSON body).
    body: bytes as they are, or anything else as JSON."""
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(env["AEGIS_SOCKET"])
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    s.close()
    head, _, rest = out.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(rest)


def instance_info(env, name):
    """`aegis instance info NAME` as a dict, or None (no such instance)."""
    p = run([AEGIS, "instance", "info", name], env=env)
    return json.loads(p.stdout) if p.returncode == 0 else None


def wait_instance(env, name, *want, timeout=15):
    """Until the instance's state is one of want (a failed one: once it says
    why); its info. A running one: also until its control socket is there,
    from when execs are served."""
    import time
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        i = instance_info(env, name)
        if i and i["state"] in want and (i["state"] != "failed" or "exit" in i):
            sock = os.path.join(env["AEGIS_STATE_DIR"], "instances", name, "control.sock")
            if i["state"] != "running" or os.path.exists(sock):
                return i
        time.sleep(0.02)
    raise AssertionError(f"{name}: {instance_info(env, name)}, wanted {want}")


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tty_exec(env, name, *argv):
    """aegis exec -t on a terminal of our own: (exit status, what it printed)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(AEGIS, [AEGIS, "exec", "-t", name, "--", *argv], env)
    out = b""
    while True:
        try:
            r, _, _ = select.select([fd], [], [], 60 * SLOW)
            if not r:
                break
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out
