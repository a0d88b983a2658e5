"""The allow mode's relay mode (spec.net_upstream, src/sandbox/netrelay.c):
the ns engine relays the sandbox's 127.0.0.1:3128 to an upstream proxy in
the supervisor's network namespace instead of serving the proxy itself —
what the engine does inside a vm guest, where the host's proxy is reached
through the guest's own 127.0.0.1:3128. No flag or policy key reaches the
mode; tests/probe/relay_run.c sets it. Here, on the host, the upstream is a
small test proxy that answers every request with what it received."""
import contextlib
import hashlib
import os
import socket
import threading

from conftest import AEGIS, run

RELAY_RUN = os.path.join(os.path.dirname(AEGIS), "tests/probe/aegis-relay-run")


@contextlib.contextmanager
def upstream_proxy():
    """Upstream stand-in: a plain request is answered with its first line;
    CONNECT is answered 200 and then echoes the tunnel's bytes until EOF."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    seen = []

    def serve(c):
        with c:
            head = b""
            while b"\r\n\r\n" not in head:
                d = c.recv(4096)
                if not d:
                    return
                head += d
            first, rest = head.split(b"\r\n")[0], head.split(b"\r\n\r\n", 1)[1]
            seen.append(first.decode())
            if first.startswith(b"CONNECT "):
                c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n" + rest)
                while d := c.recv(65536):
                    c.sendall(d)
                return
            body = b"relayed:" + first + b"\n"
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)

    def loop():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    acceptor = threading.Thread(target=loop, daemon=True)
    acceptor.start()
    try:
        yield srv.getsockname()[1], seen
    finally:
        # shutdown() wakes the blocked accept(); a bare close() would leave
        # the listener alive under it, answering "relayed:" to whatever a
        # later test sends to that port (a CI flake in the vm instance suite)
        srv.shutdown(socket.SHUT_RDWR)
        acceptor.join(10)
        srv.close()
        assert not acceptor.is_alive()


def relayed(upstream, *argv, timeout=60):
    return run([RELAY_RUN, upstream, *argv], timeout=timeout)


TUNNEL = """
import hashlib, socket
s = socket.create_connection(("127.0.0.1", 3128))
s.sendall(b"CONNECT far.test:443 HTTP/1.1\\r\\nHost: far.test:443\\r\\n\\r\\n")
data = bytes(range(256)) * 4096
got = b""
while b"\\r\\n\\r\\n" not in got:
    got += s.recv(4096)
head, got = got.split(b"\\r\\n\\r\\n", 1)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
while chunk := s.recv(65536):
    got += chunk
print(head.split(b"\\r\\n")[0].decode(), hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest())
"""


def test_relay_reaches_the_upstream_proxy():
    with upstream_proxy() as (port, seen):
        p = relayed(f"127.0.0.1:{port}", "curl", "-s", "-S", "-m", "10", "http://far.test/x")
        assert p.returncode == 0 and p.stdout == "relayed:GET http://far.test/x HTTP/1.1\n", p
        # a tunnel: 1 MiB out and back byte-exact, half-close passed on
        p = relayed(f"127.0.0.1:{port}", "python3", "-c", TUNNEL)
        assert p.stdout.strip() == "HTTP/1.1 200 Connection established True", p
    assert seen == ["GET http://far.test/x HTTP/1.1", "CONNECT far.test:443 HTTP/1.1"]


def test_relay_mode_keeps_the_sandbox_offline_otherwise():
    """Only 127.0.0.1:3128 leads out: a direct connection to the same
    upstream fails inside (its own loopback), and works from the host."""
    with upstream_proxy() as (port, _):
        p = relayed(f"127.0.0.1:{port}", "curl", "-s", "-m", "5", "--noproxy", "*", f"http://127.0.0.1:{port}/")
        assert p.returncode != 0 and "relayed" not in p.stdout, p
        p = run(["curl", "-s", "-m", "5", "--noproxy", "*", f"http://127.0.0.1:{port}/"])
        assert p.stdout.startswith("relayed:GET / HTTP/1.1"), p


def test_unreachable_upstream_closes_the_connection_not_the_run():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]  # bound, not listening: connections are refused
    try:
        p = relayed(f"127.0.0.1:{port}", "sh", "-c", "curl -s -m 10 http://far.test/; echo curl=$?")
    finally:
        s.close()
    # closed at once, no reply: a reset ("recv failure", 56) or, when the
    # close beats curl's request, an orderly one ("empty reply", 52)
    assert p.returncode == 0 and p.stdout.strip() in ("curl=56", "curl=52"), p


def test_bad_upstream_fails_before_the_run():
    p = relayed("far.test:3128", "true")
    assert p.returncode == 125 and "no numeric address" in p.stderr, p
