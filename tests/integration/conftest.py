"""Shared fixtures for the integration tests: they drive the real binaries.

AEGIS_BIN   path of the aegis binary under test (default: build/aegis)
AEGIS_PROBE path of the hostile probe binary (default: build/tests/probe/aegis-probe)
"""
import contextlib
import http.server
import os
import subprocess
import threading

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


def aegis(*args, **kw):
    """`aegis ARGS...` → CompletedProcess."""
    return run([AEGIS, *args], **kw)


def sandboxed(*argv, opts=(), **kw):
    """`aegis run OPTS -- ARGV...` → CompletedProcess."""
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
