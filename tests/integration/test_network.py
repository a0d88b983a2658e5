"""Network modes: none (default), host, allow (the egress proxy).
HOSTILE.md N-01, N-02, N-03, N-05, N-06."""
import contextlib
import http.server
import json
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import AEGIS, SLOW, TEST_BACKEND, http_server, run, sandboxed


@contextlib.contextmanager
def udp_tcp_counter(host="127.0.0.1"):
    """Counts every packet/connection that reaches host: a stand-in resolver
    on the DNS port (53, or any port if 53 is taken on this machine)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind((host, 53))
    except OSError:
        udp.bind((host, 0))
    port = udp.getsockname()[1]
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((host, port))
    tcp.listen(16)
    seen = {"n": 0}
    stop = threading.Event()

    def loop():
        udp.settimeout(0.1)
        tcp.settimeout(0.1)
        while not stop.is_set():
            for s in (udp, tcp):
                try:
                    if s is udp:
                        s.recvfrom(4096)
                    else:
                        s.accept()[0].close()
                    seen["n"] += 1
                except (socket.timeout, OSError):
                    pass

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield port, seen
    finally:
        stop.set()
        t.join()
        udp.close()
        tcp.close()


def host_ip():
    out = run(["ip", "-4", "route", "get", "192.0.2.1"]).stdout.split()
    return out[out.index("src") + 1]


# ---- none (default) ----------------------------------------------------

def test_none_mode_reaches_nothing():
    """N-06: curl, bash /dev/tcp, UDP, ping, DNS all fail; the same work on the host."""
    with http_server() as port:
        url = f"http://127.0.0.1:{port}/"
        assert run(["curl", "-s", "-m", "5", url]).stdout == "hello from the host\n"
        for argv in (["curl", "-s", "-m", "2", url],
                     ["curl", "-s", "-m", "2", f"http://{host_ip()}:{port}/"],
                     ["bash", "-c", f"echo > /dev/tcp/127.0.0.1/{port}"],
                     ["bash", "-c", f"echo > /dev/tcp/{host_ip()}/{port}"],
                     ["getent", "hosts", "example.com"],
                     ["ping", "-c", "1", "-W", "1", host_ip()]):
            p = sandboxed(*argv, timeout=30)
            assert p.returncode != 0 and "hello" not in p.stdout, (argv, p)


def test_no_dns_traffic_leaves_the_sandbox():
    """N-05: UDP and TCP queries to a resolver on the host and to public
    resolver addresses: zero packets arrive; the same probe from the host arrives."""
    with udp_tcp_counter(host_ip()) as (port, seen):
        probe = (f"import socket\n"
                 f"for host in ('{host_ip()}', '8.8.8.8', '1.1.1.1', '127.0.0.1'):\n"
                 f"  for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):\n"
                 f"    s = socket.socket(socket.AF_INET, kind); s.settimeout(1)\n"
                 f"    try:\n"
                 f"      s.connect((host, {port})) if kind == socket.SOCK_STREAM else s.sendto(b'q', (host, {port}))\n"
                 f"    except OSError: pass\n")
        for mode in ((), ("--net", "allow")):
            sandboxed("python3", "-c", probe, opts=mode, timeout=60)
            sandboxed("getent", "hosts", "secret.exfil.test", opts=mode)
        time.sleep(0.3)
        assert seen["n"] == 0, seen
        run(["python3", "-c", probe.replace("'8.8.8.8', '1.1.1.1', ", "")], timeout=30)
        time.sleep(0.3)
        assert seen["n"] > 0  # the probe does reach it from outside
    assert not sandboxed("test", "-e", "/etc/resolv.conf").returncode == 0


# ---- host ----------------------------------------------------------------

def test_host_mode_is_explicit_and_audited(tmp_path):
    log = str(tmp_path / "audit.jsonl")
    with http_server() as port:
        p = sandboxed("curl", "-s", "-m", "5", f"http://127.0.0.1:{port}/", opts=("--net", "host", "--audit", log))
        if TEST_BACKEND == "vm":
            # the guest never shares the host's network: refused in one
            # line before any guest boots, and nothing reached the host
            assert p.returncode == 125 and "refuses --net host" in p.stderr, p
            assert p.stderr.strip().count("\n") == 0 and not os.path.exists(log), p
            return
        assert p.stdout == "hello from the host\n", p
    start = json.loads(open(log).readline())
    assert start["network"] == "host"


# ---- ports below 1024 --------------------------------------------------------

LOW_BIND = ("import socket\n"
            "for port in (80, 443, 1023):\n"
            "    s = socket.socket(); s.bind(('0.0.0.0', port)); s.listen(1)\n"
            "print(open('/proc/sys/net/ipv4/ip_unprivileged_port_start').read().strip())\n")


@pytest.mark.parametrize("mode", ["none", "allow"])
def test_low_ports_bind_in_the_sandboxs_own_network(mode):
    """`python3 -m http.server 80` runs as on a machine of one's own (Docker
    and Podman do the same): in the sandbox's own network namespace its
    processes, which keep no capability, bind ports below 1024. The
    setting is that namespace's; the host's stays as it was."""
    host_before = open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read()
    p = sandboxed("python3", "-c", LOW_BIND, opts=("--net", mode))
    assert p.returncode == 0 and p.stdout == "0\n", p
    assert open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read() == host_before


def test_host_mode_keeps_low_ports_closed():
    """--net host is the host's namespace, with the host's setting: a
    sandbox process (no capability) cannot take a port below 1024 there,
    while root on the host can take the same port (ns only: a vm guest
    never shares the host's network)."""
    if TEST_BACKEND == "vm":
        assert sandboxed("true", opts=("--net", "host")).returncode == 125
        return
    start = int(open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read())
    assert start > 1, "this host lets anyone bind low ports: nothing to show"
    with socket.socket() as s:  # a low port free on the host, taken by root here
        for port in range(start - 1, 0, -1):
            try:
                s.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
        else:
            raise AssertionError("no free port below %d on this host" % start)
    code = f"import socket; socket.socket().bind(('127.0.0.1', {port}))"
    p = sandboxed("python3", "-c", code, opts=("--net", "host"))
    assert p.returncode != 0 and "Permission denied" in p.stderr, p


# ---- allow: the egress proxy ------------------------------------------------

def allow(*rules, hosts=(), deny=(), extra=()):
    opts = ["--net", "allow"]
    for r in rules:
        opts += ["--allow", r]
    for d in deny:
        opts += ["--deny", d]
    for h in hosts:
        opts += ["--host", h]
    return tuple(opts) + tuple(extra)


def curl_in(url, opts, *flags):
    return sandboxed("curl", "-s", "-S", "-m", "10", *flags, url, opts=opts, timeout=60)


def test_allowed_name_reaches_the_server():
    with http_server() as port:
        p = curl_in(f"http://api.test:{port}/", allow(f"api.test:{port}", hosts=("api.test=127.0.0.1",)))
        assert p.returncode == 0 and p.stdout == "hello from the host\n", p


def test_python_urllib_uses_the_proxy():
    with http_server() as port:
        code = f"import urllib.request; print(urllib.request.urlopen('http://api.test:{port}/').read().decode(), end='')"
        p = sandboxed("python3", "-c", code, opts=allow(f"api.test:{port}", hosts=("api.test=127.0.0.1",)))
        assert p.stdout == "hello from the host\n", p


def test_unlisted_name_and_direct_ip_get_403_with_reason():
    with http_server() as port:
        opts = allow(f"api.test:{port}", hosts=("api.test=127.0.0.1", "other.test=127.0.0.1"))
        start = time.monotonic()
        p = curl_in(f"http://other.test:{port}/", opts, "-i")
        assert "403" in p.stdout.splitlines()[0] and "other.test" in p.stdout, p
        # an answer, not a hang (curl gives up at 10 s); a guest starts in seconds under load
        assert time.monotonic() - start < (5 if SLOW == 1 else 9)
        p = curl_in(f"http://127.0.0.1:{port}/", opts, "-i", "--noproxy", "")
        assert "403" in p.stdout.splitlines()[0], p


def test_name_resolving_to_loopback_is_refused():
    """N-02: 'localhost' resolves to 127.0.0.1; allowing the name does not allow loopback."""
    with http_server() as port:
        p = curl_in(f"http://localhost:{port}/", allow(f"localhost:{port}"), "-i", "--noproxy", "")
        assert "403" in p.stdout and "hello" not in p.stdout, p


def test_metadata_address_is_refused():
    """N-01/N-03: a name that resolves to the metadata address is refused."""
    marker = "# aegis-test-metadata"
    with open("/etc/hosts") as f:
        saved = f.read()
    try:
        with open("/etc/hosts", "a") as f:
            f.write(f"169.254.169.254 meta.aegis-test {marker}\n")
        p = curl_in("http://meta.aegis-test/latest/meta-data/", allow("meta.aegis-test", "*.aegis-test"), "-i")
        assert "403" in p.stdout, p
    finally:
        with open("/etc/hosts", "w") as f:
            f.write(saved)


def test_deny_beats_allow_and_wildcards():
    with http_server() as port:
        hosts = ("a.api.test=127.0.0.1", "api.test=127.0.0.1")
        opts = allow(f"*.api.test:{port}", hosts=hosts)
        assert curl_in(f"http://a.api.test:{port}/", opts).stdout == "hello from the host\n"
        p = curl_in(f"http://api.test:{port}/", opts, "-i")  # *. is subdomains only
        assert "403" in p.stdout, p
        p = curl_in(f"http://a.api.test:{port}/", allow(f"*.api.test:{port}", hosts=hosts, deny=("a.api.test",)), "-i")
        assert "403" in p.stdout and "a.api.test" in p.stdout, p
        p = curl_in(f"http://a.api.test:{port + 1 if port < 65535 else 1}/", opts, "-i")  # other port
        assert "403" in p.stdout, p


def test_tls_through_connect(tmp_path):
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=tls.test",
                    "-keyout", str(key), "-out", str(cert), "-days", "1"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    port = lsock.getsockname()[1]

    def serve():
        conn, _ = lsock.accept()
        with ctx.wrap_socket(conn, server_side=True) as s:
            s.recv(4096)
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nsecure\n")
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    p = curl_in(f"https://tls.test:{port}/", allow(f"tls.test:{port}", hosts=("tls.test=127.0.0.1",)), "-k")
    t.join(5)
    lsock.close()
    assert p.stdout == "secure\n", p


def test_connections_are_audited(tmp_path):
    log = str(tmp_path / "audit.jsonl")
    with http_server() as port:
        opts = allow(f"api.test:{port}", hosts=("api.test=127.0.0.1", "no.test=127.0.0.1"), extra=("--audit", log))
        sandboxed("sh", "-c", f"curl -s http://api.test:{port}/; curl -s http://no.test:{port}/", opts=opts)
    events = [json.loads(l) for l in open(log) if '"net.connect"' in l]
    ok = [e for e in events if e["verdict"] == "allow"]
    no = [e for e in events if e["verdict"] == "deny"]
    assert ok and ok[0]["host"] == "api.test" and ok[0]["address"] == "127.0.0.1" and ok[0]["port"] == port
    assert ok[0]["bytes_down"] > 20 and ok[0]["bytes_up"] > 20
    assert no and no[0]["host"] == "no.test" and no[0]["rule"]
    assert run([AEGIS, "audit", "verify", log]).returncode == 0


def test_proxy_survives_garbage():
    """Malformed requests, huge headers, many connections: answered, and the
    proxy still serves the next request."""
    with http_server() as port:
        script = (
            "import socket\n"
            "def ask(data):\n"
            "  s = socket.create_connection(('127.0.0.1', 3128), timeout=5); s.sendall(data)\n"
            "  try: r = s.recv(200)\n"
            "  except OSError: r = b''\n"
            "  s.close(); return r.split(b'\\r\\n')[0].decode()\n"
            "print(ask(b'garbage\\r\\n\\r\\n'))\n"
            "print(ask(b'GET http://x/ HTTP/1.1\\r\\nX: ' + b'a' * 100000 + b'\\r\\n\\r\\n'))\n"
            "for i in range(500):\n"
            "  socket.create_connection(('127.0.0.1', 3128)).close()\n"
            f"print(ask(b'GET http://api.test:{port}/ HTTP/1.1\\r\\nHost: api.test\\r\\n\\r\\n'))\n")
        p = sandboxed("python3", "-c", script, opts=allow(f"api.test:{port}", hosts=("api.test=127.0.0.1",)),
                      timeout=60)
        lines = p.stdout.splitlines()
        assert len(lines) == 3, p
        assert " 400" in lines[0] and " 431" in lines[1] and " 200" in lines[2], lines


def test_git_clone_through_the_proxy(tmp_path):
    """A tool that honours the proxy variables works unchanged: git over HTTP."""
    src = tmp_path / "src"
    src.mkdir()
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", HOME=str(tmp_path))
    for argv in (["git", "init", "-q", "-b", "main", str(src)],
                 ["git", "-C", str(src), "commit", "-q", "--allow-empty", "-m", "first"],
                 ["git", "clone", "-q", "--bare", str(src), str(tmp_path / "www" / "repo.git")],
                 ["git", "-C", str(tmp_path / "www" / "repo.git"), "update-server-info"]):
        subprocess.run(argv, check=True, env=env, capture_output=True)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path / "www"), **kw)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    try:
        p = sandboxed("sh", "-c", f"git clone -q http://git.test:{port}/repo.git /tmp/r && git -C /tmp/r log --format=%s",
                      opts=allow(f"git.test:{port}", hosts=("git.test=127.0.0.1",)), timeout=60)
        assert p.returncode == 0 and p.stdout.strip() == "first", p
        p = sandboxed("git", "clone", "-q", f"http://git.test:{port}/repo.git", "/tmp/r")
        assert p.returncode != 0  # without the proxy rules: no network
    finally:
        srv.shutdown()
        srv.server_close()
