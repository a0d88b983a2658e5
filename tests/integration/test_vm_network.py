"""The vm backend's network (docs/vm.md, "Network"): `--net allow` through
the ns backend's egress proxy on the host, reached from the guest's
127.0.0.1:3128 over the virtio-serial port "aegis-net"; the guest has no
NIC. Each hostile probe is also shown working where it should (on the
host, or through the proxy), so a broken probe cannot pass.

Each test boots a QEMU guest (TCG: the test mode), so boots are kept few.
"""
import fcntl
import hashlib
import json
import os
import socket
import time
import urllib.request

from conftest import aegis, http_server
from test_network import host_ip, udp_tcp_counter
from test_vm import VM_ENV, guest_files, run_dirs  # noqa: F401 (guest_files: the autouse fixture)

BIG = bytes(range(256)) * 8192  # 2 MiB: many windows of the channel's flow control


def abandoned(dirs):
    """Run directories whose lock no one holds: left by a run that ended.
    (Other runs on the machine hold theirs, so they do not count.)"""
    left = set()
    for d in dirs:
        try:
            fd = os.open(os.path.join(d, "lock"), os.O_RDWR)
        except OSError:
            continue  # gone meanwhile, or being born
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            left.add(d)
        except OSError:
            pass
        finally:
            os.close(fd)
    return left


def vm(*argv, opts=(), **kw):
    """`aegis run --backend vm OPTS -- ARGV`, then check nothing is left."""
    before = run_dirs()
    r = aegis("run", "--backend", "vm", *opts, "--", *argv, env=VM_ENV, **kw)
    left = abandoned(run_dirs() - before)
    assert not left, f"run directories left behind: {left}"
    return r


def allow(*rules, hosts=(), deny=(), extra=()):
    opts = ["--net", "allow"]
    for r in rules:
        opts += ["--allow", r]
    for d in deny:
        opts += ["--deny", d]
    for h in hosts:
        opts += ["--host", h]
    return tuple(opts) + tuple(extra)


def events(log, kind):
    with open(log) as f:
        return [e for e in map(json.loads, f) if e["type"] == kind]


def connect_probe(target, then=""):
    """A raw CONNECT through the guest's proxy address with busybox nc."""
    return (f"printf 'CONNECT {target} HTTP/1.1\\r\\nHost: {target}\\r\\n\\r\\n{then}' "
            f"| timeout 20 nc 127.0.0.1 3128")


def test_allowed_host_through_forward_and_connect(tmp_path):
    log = str(tmp_path / "audit.jsonl")
    with http_server(BIG) as port:
        # Outside: the server answers (the probe's baseline).
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert resp.read() == BIG
        script = (f"cat /sys/class/virtio-ports/*/name | sort | tr '\\n' ' '; echo; "
                  f"wget -q -O- http://api.test:{port}/ | sha256sum; "
                  + connect_probe(f"api.test:{port}", "GET / HTTP/1.0\\r\\n\\r\\n") + " | head -c 200")
        r = vm("sh", "-c", script,
               opts=allow(f"api.test:{port}", hosts=("api.test=127.0.0.1",), extra=("--audit", log)),
               timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["aegis", "aegis-net"], r.stdout
    assert lines[1].split()[0] == hashlib.sha256(BIG).hexdigest(), r.stdout  # 2 MiB byte-exact (forward)
    assert "HTTP/1.1 200 Connection established" in r.stdout and "HTTP/1.0 200 OK" in r.stdout, r.stdout
    assert events(log, "run.start")[0]["network"] == "allow"
    conns = events(log, "net.connect")
    assert sorted(c["method"] for c in conns) == ["CONNECT", "GET"], conns
    for c in conns:
        assert (c["host"], c["address"], c["port"], c["verdict"]) == ("api.test", "127.0.0.1", port, "allow"), c
    assert max(c["bytes_down"] for c in conns) >= len(BIG)


def test_denied_host_and_address_get_403_with_reason(tmp_path):
    log = str(tmp_path / "audit.jsonl")
    with http_server() as port:
        script = (connect_probe(f"other.test:{port}") + "; echo ---; "
                  + connect_probe(f"127.0.0.1:{port}") + "; echo ---; "
                  f"wget -q -O- http://api.test:{port}/")  # the allowed one works in the same guest
        r = vm("sh", "-c", script,
               opts=allow(f"api.test:{port}", hosts=("api.test=127.0.0.1", "other.test=127.0.0.1"),
                          extra=("--audit", log)),
               timeout=300)
    denied_name, denied_ip, allowed = r.stdout.split("---")
    assert "403 Forbidden" in denied_name and f"no allow rule matches other.test:{port}" in denied_name, r.stdout
    assert "403 Forbidden" in denied_ip and "hello" not in denied_ip, r.stdout
    assert allowed.strip() == "hello from the host", (r.stdout, r.stderr)
    verdicts = sorted((c["host"], c["verdict"]) for c in events(log, "net.connect"))
    assert verdicts == [("127.0.0.1", "deny"), ("api.test", "allow"), ("other.test", "deny")], verdicts


def test_direct_connections_and_dns_reach_nothing():
    """No NIC: a direct TCP connection to the host (its loopback or its
    address), UDP and DNS queries all fail and no packet arrives; the same
    connection from the host arrives."""
    hip = host_ip()
    with udp_tcp_counter(hip) as (port, seen), http_server() as web:
        script = (f"timeout 5 nc {hip} {port} </dev/null; echo tcp=$?; "
                  f"timeout 5 nc 127.0.0.1 {web} </dev/null; echo loop=$?; "
                  f"echo q | timeout 5 nc -u {hip} {port}; echo udp=$?; "
                  f"timeout 5 nslookup example.com {hip}; echo dns=$?; "
                  # the channel is aegis-guest's alone: a virtio port opens once
                  f"for p in /sys/class/virtio-ports/*; do (exec 3<>/dev/${{p##*/}}) 2>&1 | grep -q busy "
                  f"&& echo \"$(cat $p/name)=busy\"; done; "
                  f"ls /sys/class/net | tr '\\n' ' '; echo")
        r = vm("sh", "-c", script, opts=allow(f"{hip}:{port}"), timeout=300)
        out = r.stdout
        assert "tcp=0" not in out and "loop=0" not in out and "dns=0" not in out, out
        assert out.splitlines()[-1].split() == ["lo"], out  # the only interface
        assert "aegis=busy" in out and "aegis-net=busy" in out, out
        assert seen["n"] == 0, seen
        with socket.create_connection((hip, port), timeout=5):
            pass  # the same connection from the host arrives
        for _ in range(50):
            if seen["n"]:
                break
            time.sleep(0.1)
        assert seen["n"] > 0


def test_none_mode_has_no_channel():
    """Without --net allow there is no second port and nothing serves
    127.0.0.1:3128 (the allow tests show the same nc reaching it)."""
    r = vm("sh", "-c", "cat /sys/class/virtio-ports/*/name; "
           + connect_probe("api.test:80") + "; echo nc=$?", timeout=300)
    assert r.stdout.split() == ["aegis", "nc=1"], (r.stdout, r.stderr)


def test_host_mode_is_refused_with_one_line():
    before = run_dirs()
    r = aegis("run", "--backend", "vm", "--net", "host", "--", "true", env=VM_ENV)
    assert r.returncode == 125
    line = r.stderr.strip()
    assert "\n" not in line and "--net host is refused" in line, r.stderr
    assert not abandoned(run_dirs() - before)
