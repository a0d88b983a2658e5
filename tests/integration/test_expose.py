"""Scale to zero (issue 6): exposed ports with a router that wakes the
instance, idle pause and idle stop. HOSTILE.md A-12 (forwarding abuse),
A-05 (connection floods on the router), C-02 (a restart keeps ports)."""
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import AEGIS, SLOW, free_port, http_server, run, instance_info as info, wait_instance as wait_state

# A tiny server for inside the instance: GET / answers "hello from NAME",
# PUT-like raw uploads (first line "SHA") get the sha256 of everything
# that follows until the client's half-close; "DL N" streams N bytes.
SERVER = r"""
import hashlib, os, socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(128)
def serve(c):
    with c:
        head = b""
        while b"\n" not in head:
            b = c.recv(1)
            if not b: return
            head += b
        if head.startswith(b"SHA"):
            h = hashlib.sha256()
            while (b := c.recv(1 << 20)): h.update(b)
            c.sendall(h.hexdigest().encode())
        elif head.startswith(b"DL "):
            n = int(head.split()[1]); chunk = bytes(range(256)) * 4096
            while n > 0:
                c.sendall(chunk[:n]); n -= len(chunk)
        else:
            while b"\r\n\r\n" not in head:
                b = c.recv(4096)
                if not b: break
                head += b
            body = b"hello from " + os.environ.get("NAME", "?").encode()
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""



@pytest.fixture
def env(daemon_env, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "server.py").write_text(SERVER)
    daemon_env["TEST_WS"] = str(ws)
    # a server that never listens is given up on sooner; a TCG guest takes
    # longer to restore, and to serve each of a burst of connections
    daemon_env["AEGIS_WAKE_WAIT_MS"] = str(3000 * SLOW)
    return daemon_env


def aegis(env, *args, **kw):
    return run([AEGIS, *args], env=env, **kw)




def start(env, name, *extra, guest=8000):
    """An instance running the test server on guest, exposed on a free host port."""
    port = free_port()
    p = aegis(env, "instance", "start", "--name", name, "--expose", f"{port}:{guest}", "--env", f"NAME={name}",
              "--workspace", env["TEST_WS"], *extra, "--", "python3", "/workspace/server.py", str(guest))
    assert p.returncode == 0, p
    wait_state(env, name, "running")
    return port


def get(port, timeout=20):
    """GET / through the router: (status line, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while (b := s.recv(65536)):
            data += b
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode() if head else "", body.decode()


def test_served_running_paused_stopped_and_refused_when_disabled(env):
    port = start(env, "web", "--idle-pause", "0", "--idle-stop", "0")
    assert get(port) == ("HTTP/1.0 200 OK", "hello from web")
    # paused: the connection resumes it
    assert aegis(env, "instance", "pause", "web").returncode == 0
    assert get(port) == ("HTTP/1.0 200 OK", "hello from web")
    i = info(env, "web")
    assert i["state"] == "running" and 0 <= i["activity"]["paused_s"] < 60, i  # counted from the pause
    # stopped (as idle stop leaves it): the connection starts it again and
    # is held until the server inside accepts
    assert aegis(env, "instance", "delete", "web").returncode == 0
    port = start(env, "web", "--idle-pause", "1s", "--idle-stop", "1s")
    wait_state(env, "web", "stopped")
    assert get(port) == ("HTTP/1.0 200 OK", "hello from web")
    i = info(env, "web")
    assert i["state"] == "running" and i["activity"]["wake_count"] == 1, i
    # disabled: refused at once, and it stays down
    assert aegis(env, "instance", "disable", "web").returncode == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    assert info(env, "web")["state"] == "disabled"
    # started again by hand: served again
    assert aegis(env, "instance", "start", "--name", "web").returncode == 0
    assert get(port) == ("HTTP/1.0 200 OK", "hello from web")


def test_the_issues_own_example_serves_port_80(env):
    """Issue 10's example as written: `python3 -m http.server 80` behind
    --expose, which needs port 80 in the instance's own network namespace
    (test_network: low ports); then pause, resume and an exec."""
    port = free_port()
    p = aegis(env, "instance", "start", "--name", "box", "--expose", f"{port}:80", "--idle-pause", "0",
              "--workspace", env["TEST_WS"], "--", "python3", "-m", "http.server", "80", "--directory",
              "/workspace")
    assert p.returncode == 0, p
    wait_state(env, "box", "running")
    deadline = time.monotonic() + 60 * SLOW
    while True:  # the server binds a moment after the command starts
        try:
            status, body = get(port)
        except OSError as e:
            status, body = "", str(e)
        if status or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == "HTTP/1.0 200 OK" and "server.py" in body, (status, body, aegis(env, "logs", "box").stdout)
    assert aegis(env, "instance", "pause", "box").returncode == 0
    assert aegis(env, "instance", "resume", "box").returncode == 0
    p = aegis(env, "exec", "box", "--", "ls", "/workspace")
    assert p.returncode == 0 and p.stdout == "server.py\n", p


def test_many_clients_during_a_cold_wake(env):
    port = start(env, "many", "--idle-pause", "1s", "--idle-stop", "1s")
    wait_state(env, "many", "stopped")
    results = [None] * 30

    def one(i):
        try:
            results[i] = get(port)
        except OSError as e:
            results[i] = repr(e)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(30)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert results == [("HTTP/1.0 200 OK", "hello from many")] * 30, results
    assert info(env, "many")["activity"]["wake_count"] == 1


def test_large_transfers_both_ways_with_half_close(env):
    port = start(env, "big", "--idle-pause", "0")
    # 1 GiB up: the server hashes until our half-close, then answers
    chunk, h = os.urandom(1 << 20), hashlib.sha256()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        s.sendall(b"SHA\n")
        for _ in range(1024):
            s.sendall(chunk)
            h.update(chunk)
        s.shutdown(socket.SHUT_WR)
        digest = b""
        while (b := s.recv(100)):
            digest += b
    assert digest.decode() == h.hexdigest()
    # 256 MiB down, checked
    n, h, want = 256 << 20, hashlib.sha256(), hashlib.sha256()
    pattern = bytes(range(256)) * 4096
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        s.sendall(b"DL %d\n" % n)
        got = 0
        while (b := s.recv(1 << 20)):
            h.update(b)
            got += len(b)
    for left in range(n, 0, -len(pattern)):
        want.update(pattern[:left])
    assert got == n and h.digest() == want.digest()


def test_slow_clients_and_a_thousand_dropped_connections(env):
    port = start(env, "slow", "--idle-pause", "0")
    daemon_pid = int(subprocess.run(["pgrep", "-f", "^aegisd --socket " + env["AEGIS_SOCKET"]],
                                    capture_output=True, text=True).stdout.split()[0])
    fds_before = len(os.listdir(f"/proc/{daemon_pid}/fd"))
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET / HT")  # and then nothing for a while
    for _ in range(1000):
        socket.create_connection(("127.0.0.1", port)).close()
    assert get(port) == ("HTTP/1.0 200 OK", "hello from slow")
    slow.sendall(b"TP/1.0\r\n\r\n")
    assert slow.recv(100).startswith(b"HTTP/1.0 200 OK")
    slow.close()
    deadline = time.monotonic() + 10 * SLOW
    while len(os.listdir(f"/proc/{daemon_pid}/fd")) > fds_before + 2:
        assert time.monotonic() < deadline, "descriptors left behind"
        time.sleep(0.1)


def test_idle_pause_stop_wake_on_exec_and_audit(env):
    start(env, "idler", "--idle-pause", "1s", "--idle-stop", "2s")
    assert aegis(env, "exec", "idler", "--", "sh", "-c", "echo kept > /workspace/note").returncode == 0
    t = time.monotonic()
    wait_state(env, "idler", "paused")
    assert time.monotonic() - t >= 0.8
    i = wait_state(env, "idler", "stopped")
    assert i["activity"]["paused_s"] >= 1.5, i
    # an exec wakes it, and the workspace is as it was left
    p = aegis(env, "exec", "idler", "--", "cat", "/workspace/note")
    assert (p.returncode, p.stdout) == (0, "kept\n"), p
    i = info(env, "idler")
    assert i["state"] == "running" and i["activity"]["wake_count"] == 1 and i["activity"]["stopped_s"] > 0, i
    log = os.path.join(env["AEGIS_STATE_DIR"], "instances", "idler", "audit.jsonl")
    types = [json.loads(line)["type"] for line in open(log)]
    for t in ("instance.pause", "instance.stop", "instance.wake"):
        assert t in types, types
    assert aegis(env, "audit", "verify", log).returncode == 0


def test_activity_keeps_it_awake(env):
    port = start(env, "busy", "--idle-pause", "1s")
    with socket.create_connection(("127.0.0.1", port)) as s:  # an open connection is activity
        time.sleep(2.5)
        assert info(env, "busy")["state"] == "running"
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.0 200 OK")
    wait_state(env, "busy", "paused")


def test_only_the_instances_own_ports(env):
    """A-12: the target is always the instance's own loopback: a host
    server on the same port is never reached, whatever is asked."""
    with http_server() as host_port:
        p = aegis(env, "instance", "start", "--name", "own", "--expose", f"{free_port()}:{host_port}",
                  "--idle-pause", "0", "--", "sleep", "600")
        assert p.returncode == 0, p
        wait_state(env, "own", "running")
        exposed = info(env, "own")["expose"][0].split(":")[0]
        assert run(["curl", "-sS", "-m", "5", f"http://127.0.0.1:{host_port}/"]).stdout  # the host server works
        # nothing listens on that port inside: the router gives up, cleanly
        s = socket.create_connection(("127.0.0.1", int(exposed)), timeout=60)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        s.settimeout(60)
        try:
            assert s.recv(100) == b""  # closed: nothing of the host server's
        except ConnectionResetError:
            pass  # closed with our request unread: the same
        s.close()
    for bad in ("169.254.169.254:80", "8080", "localhost:8080:80", "0:80", "8080:70000", "1.2.3.4.5:80:80",
                "[::1:80:80", "8080:80:"):
        p = aegis(env, "instance", "start", "--name", "bad", "--expose", bad, "--", "true")
        assert p.returncode == 125 and "expose" in p.stderr, (bad, p)
    assert info(env, "bad") is None


def test_taken_port_and_host_network_are_refused(env, tmp_path):
    with http_server() as taken:
        p = aegis(env, "instance", "start", "--name", "t", "--expose", f"{taken}:80", "--", "true")
        assert p.returncode == 125 and "cannot listen" in p.stderr and "in use" in p.stderr, p
    assert info(env, "t") is None
    pol = tmp_path / "host.json"
    pol.write_text(json.dumps({"network": {"mode": "host"}}))
    p = aegis(env, "instance", "start", "--name", "h", "--policy", str(pol), "--expose", "18081:80", "--", "true")
    assert p.returncode == 125 and "host-network" in p.stderr, p


def test_a_restarted_daemon_serves_the_ports_again(env):
    port = start(env, "again", "--idle-pause", "0")
    pid = int(subprocess.run(["pgrep", "-f", "^aegisd --socket " + env["AEGIS_SOCKET"]],
                             capture_output=True, text=True).stdout.split()[0])
    os.kill(pid, signal.SIGKILL)
    # its listeners go with it (once its last thread is gone)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except ConnectionRefusedError:
            break
        assert time.monotonic() < deadline, "the port outlived the daemon"
        time.sleep(0.02)
    assert aegis(env, "up").returncode == 0
    assert get(port) == ("HTTP/1.0 200 OK", "hello from again")


def test_a_stubborn_stop_holds_up_no_other_wake(env):
    """An instance that ignores SIGTERM takes the 5 s grace to stop; a wake
    of another instance meanwhile is not made to wait for it."""
    port = start(env, "quick", "--idle-pause", "0")
    p = aegis(env, "instance", "start", "--name", "stubborn", "--idle-pause", "1s", "--idle-stop", "1s", "--",
              "sh", "-c", "trap '' TERM; while :; do sleep 0.2; done")
    assert p.returncode == 0, p
    wait_state(env, "stubborn", "paused")
    deadline = time.monotonic() + 10
    while not os.path.exists(os.path.join(env["AEGIS_STATE_DIR"], "instances", "stubborn", "stopped")):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert aegis(env, "instance", "pause", "quick").returncode == 0
    t = time.monotonic()
    assert get(port) == ("HTTP/1.0 200 OK", "hello from quick")
    assert time.monotonic() - t < 2, time.monotonic() - t
