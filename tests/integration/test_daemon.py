"""aegisd, first part (issue 5): its socket, its API server, up/down/status.
HOSTILE.md A-01 (malformed requests), A-03 (huge body), A-05 (slow client),
A-10 (another user, a sandbox)."""
import json
import os
import pwd
import socket
import stat
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import AEGIS, ROOT, run, sandboxed

SPEC = json.load(open(os.path.join(ROOT, "docs", "api", "openapi.json")))


@pytest.fixture
def daemon():
    d = tempfile.mkdtemp(prefix="aegisd-test-")
    os.chmod(d, 0o755)  # the socket's own dir below is what must be 0700
    sock = os.path.join(d, "run", "aegisd.sock")
    env = dict(os.environ, AEGIS_SOCKET=sock, AEGIS_STATE_DIR=os.path.join(d, "state"))
    up = run([AEGIS, "up"], env=env)
    assert up.returncode == 0, up
    yield sock, env
    run([AEGIS, "down"], env=env)
    subprocess.run(["rm", "-rf", d])


def raw(sock, data, timeout=10):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(sock)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    s.close()
    return out


def http(sock, method, path, body=b""):
    resp = raw(sock, f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    head, _, payload = resp.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload) if payload.strip() else None


def test_socket_is_private(daemon):
    sock, env = daemon
    assert stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600


def test_up_is_idempotent_status_and_down(daemon):
    sock, env = daemon
    assert run([AEGIS, "up"], env=env).returncode == 0
    st = run([AEGIS, "status"], env=env)
    assert st.returncode == 0 and "aegisd" in st.stdout and "instances" in st.stdout
    js = json.loads(run([AEGIS, "status", "--json"], env=env).stdout)
    assert js["api"] == "v1" and js["instances"]["total"] == 0
    assert run([AEGIS, "down"], env=env).returncode == 0
    assert not os.path.exists(sock)
    assert run([AEGIS, "status"], env=env).returncode == 1
    assert run([AEGIS, "up"], env=env).returncode == 0  # and back


def test_every_documented_path_answers_as_documented(daemon):
    sock, _ = daemon
    for path, methods in SPEC["paths"].items():
        for method, op in methods.items():
            if path == "/v1/shutdown" or method == "parameters":
                continue
            status, body = http(sock, method.upper(), path.replace("{name}", "nosuch"))
            assert str(status) in op["responses"], (path, status)
            schema = op["responses"][str(status)]["content"]["application/json"]["schema"]["$ref"]
            required = SPEC["components"]["schemas"][schema.split("/")[-1]]["required"]
            assert all(k in body for k in required), (path, body)


@pytest.mark.parametrize("method,path,status", [("GET", "/v2/health", 404), ("GET", "/", 404),
                                                ("POST", "/v1/health", 405), ("DELETE", "/v1/status", 405),
                                                ("GET", "/v1/health/../status", 404)])
def test_unknown_paths_and_methods_get_json_errors(daemon, method, path, status):
    sock, _ = daemon
    got, body = http(sock, method, path)
    assert got == status and body["error"]["code"] and body["error"]["message"], body


def test_huge_body_is_413_and_daemon_lives(daemon):
    sock, _ = daemon
    got, body = http(sock, "POST", "/v1/status", b"x" * (2 << 20))
    assert got in (405, 413), got
    resp = raw(sock, b"POST /v1/shutdown HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n" + b"{" * (2 << 20))
    assert b" 413 " in resp.split(b"\r\n")[0], resp[:100]
    assert http(sock, "GET", "/v1/health")[0] == 200


def test_garbage_requests_do_not_hurt(daemon):
    sock, _ = daemon
    for junk in (b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n", b"GET /v1/health HTTP/9.9\r\n\r\n",
                 b"GET /v1/health HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n"):
        raw(sock, junk, timeout=5)
    assert http(sock, "GET", "/v1/health")[0] == 200


def test_parallel_clients(daemon):
    sock, _ = daemon
    results = []

    def one():
        results.append(http(sock, "GET", "/v1/health")[0])
    threads = [threading.Thread(target=one) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(200) == 100


def test_slow_client_is_cut_off(daemon):
    """A-05: a client that sends a partial request is closed at the timeout,
    and others are served meanwhile."""
    sock, _ = daemon
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHo")
    assert http(sock, "GET", "/v1/health")[0] == 200
    s.settimeout(20)
    start = time.monotonic()
    assert s.recv(100) == b""  # closed by the daemon
    assert time.monotonic() - start < 15
    s.close()


def test_other_users_and_sandboxes_are_refused(daemon):
    """A-10: another uid cannot reach the socket (0700 dir); if the
    permissions were loosened by mistake, SO_PEERCRED still refuses it."""
    sock, env = daemon
    try:
        pw = pwd.getpwnam("aegis-rootless")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "aegis-rootless"], check=True)
        pw = pwd.getpwnam("aegis-rootless")
    probe = ["python3", "-c", "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
             "s.sendall(b'GET /v1/health HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n');"
             "print(s.recv(100).split(b'\\r\\n')[0].decode())", sock]
    p = subprocess.run(probe, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], capture_output=True, text=True)
    assert p.returncode != 0 and "Permission denied" in p.stderr, p
    os.chmod(os.path.dirname(sock), 0o711)
    os.chmod(sock, 0o666)
    try:
        p = subprocess.run(probe, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], capture_output=True, text=True)
        assert "403" in p.stdout, p
        assert subprocess.run(probe, capture_output=True, text=True).stdout.split()[1] == "200"
    finally:
        os.chmod(os.path.dirname(sock), 0o700)
        os.chmod(sock, 0o600)
    # from inside a sandbox the socket path does not even exist
    p = sandboxed("test", "-e", sock)
    assert p.returncode == 1


def test_daemon_refuses_an_open_socket_dir(tmp_path):
    d = tmp_path / "open"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    p = run([os.path.join(os.path.dirname(AEGIS), "aegisd"), "--socket", str(d / "aegisd.sock")], timeout=10,
            env=dict(os.environ, AEGIS_STATE_DIR=str(tmp_path / "state")))
    assert p.returncode == 125 and "0700" in p.stderr, p
