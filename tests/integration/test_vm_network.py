"""The vm backend's network (docs/vm.md, "Network"): `--net allow` with the
engine in the guest. The sandbox's 127.0.0.1:3128 is relayed by the engine
to the guest's, which aegis-guest carries over the virtio-serial port
"aegis-net" to the ns backend's egress proxy on the host; the guest has no
NIC. Each hostile probe is also shown working where it should (on the
host, or through the proxy), so a broken probe cannot pass.

Each test boots a QEMU guest (TCG: the test mode), so boots are kept few.
"""
import hashlib
import json
import time

from conftest import aegis, http_server, run
from test_network import host_ip, udp_tcp_counter
from test_vm import VM_ENV, guest_files, left_behind, run_dirs  # noqa: F401 (guest_files: the autouse fixture)

BIG = bytes(range(256)) * 8192  # 2 MiB: many windows of the channel's flow control


def vm(*argv, opts=(), **kw):
    """`aegis run --backend vm OPTS -- ARGV`, then check nothing is left."""
    before = run_dirs()
    r = aegis("run", "--backend", "vm", *opts, "--", *argv, env=VM_ENV, **kw)
    assert not left_behind(before)
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


def log_events(log):
    with open(log) as f:
        return [json.loads(line) for line in f]


def test_allowed_host_through_forward_and_connect(tmp_path):
    log = str(tmp_path / "audit.jsonl")
    with http_server(BIG) as port:
        # Outside: the server answers (the probe's baseline).
        assert run(["sh", "-c", f"curl -s http://127.0.0.1:{port}/ | sha256sum"]).stdout.split()[0] == \
            hashlib.sha256(BIG).hexdigest()
        script = (f"echo $HTTP_PROXY; "
                  f"curl -s -m 60 http://api.test:{port}/ | sha256sum; "             # forward (GET)
                  f"curl -s -m 60 -p http://api.test:{port}/ | sha256sum")           # CONNECT tunnel
        r = vm("sh", "-c", script,
               opts=allow(f"api.test:{port}", hosts=("api.test=127.0.0.1",), extra=("--audit", log)),
               timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "http://127.0.0.1:3128", r.stdout  # the ns backend's proxy environment
    digest = hashlib.sha256(BIG).hexdigest()
    assert [line.split()[0] for line in lines[1:3]] == [digest, digest], r.stdout  # 2 MiB byte-exact, twice
    evs = log_events(log)
    types = [e["type"] for e in evs]
    assert types[0] == "run.start" and types[-1] == "run.end", types
    assert evs[0]["network"] == "allow" and evs[0]["backend"] == "vm"
    conns = [e for e in evs if e["type"] == "net.connect"]
    assert sorted(c["method"] for c in conns) == ["CONNECT", "GET"], conns
    for c in conns:
        assert (c["host"], c["address"], c["port"], c["verdict"]) == ("api.test", "127.0.0.1", port, "allow"), c
        assert c["id"] == evs[0]["id"], c  # the run's id, as the engine's events have it
        assert c["bytes_down"] >= len(BIG), c
    assert [e["seq"] for e in evs] == list(range(evs[0]["seq"], evs[0]["seq"] + len(evs)))
    assert aegis("audit", "verify", log).returncode == 0


def test_denied_host_and_address_get_403_with_reason(tmp_path):
    log = str(tmp_path / "audit.jsonl")
    with http_server() as port:
        script = (f"curl -s -m 60 -i http://other.test:{port}/; echo ---; "
                  f"curl -s -m 60 -i http://127.0.0.1:{port}/ --noproxy ''; echo ---; "
                  f"curl -s -m 60 -i -p http://other.test:{port}/; echo ---; "
                  f"curl -s -m 60 http://api.test:{port}/")  # the allowed one works in the same sandbox
        r = vm("sh", "-c", script,
               opts=allow(f"api.test:{port}", hosts=("api.test=127.0.0.1", "other.test=127.0.0.1"),
                          extra=("--audit", log)),
               timeout=300)
    denied_name, denied_ip, denied_connect, allowed = r.stdout.split("---")
    assert "403 Forbidden" in denied_name and f"no allow rule matches other.test:{port}" in denied_name, r.stdout
    assert "403 Forbidden" in denied_ip and "hello" not in denied_ip, r.stdout
    assert "403" in denied_connect and "hello" not in denied_connect, r.stdout
    assert allowed.strip() == "hello from the host", (r.stdout, r.stderr)
    verdicts = sorted((c["host"], c["verdict"]) for c in log_events(log) if c["type"] == "net.connect")
    assert verdicts == [("127.0.0.1", "deny"), ("api.test", "allow"), ("other.test", "deny"),
                        ("other.test", "deny")], verdicts
    assert aegis("audit", "verify", log).returncode == 0


def test_direct_connections_and_dns_reach_nothing():
    """No NIC in the guest and only lo in the sandbox: direct TCP to the
    host (its address and the sandbox's loopback), UDP and DNS queries all
    fail and no packet arrives; the same probe from the host arrives."""
    hip = host_ip()
    with udp_tcp_counter(hip) as (port, seen), http_server() as web:
        probe = (f"import socket\n"
                 f"for host in ('{hip}', '8.8.8.8', '127.0.0.1'):\n"
                 f"  for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):\n"
                 f"    s = socket.socket(socket.AF_INET, kind); s.settimeout(2)\n"
                 f"    try:\n"
                 f"      if kind == socket.SOCK_STREAM:\n"
                 f"        s.connect((host, {port})); print('reached', host)\n"
                 f"      else:\n"
                 f"        s.sendto(b'q', (host, {port}))\n"
                 f"    except OSError: pass\n")
        script = (f"python3 -c \"$0\"; "
                  f"curl -s -m 5 --noproxy '*' http://{hip}:{web}/; echo tcp=$?; "
                  f"curl -s -m 5 --noproxy '*' http://127.0.0.1:{web}/; echo loop=$?; "
                  f"getent hosts example.com; echo dns=$?; "
                  f"ls /dev | grep -c vport; "  # the channel's ports are not the sandbox's
                  f"tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
        r = vm("sh", "-c", script, probe, opts=allow(f"{hip}:{web}"), timeout=300)
        out = r.stdout
        assert "reached" not in out, out
        assert "tcp=0" not in out and "loop=0" not in out and "dns=0" not in out and "hello" not in out, out
        assert out.splitlines()[-2:] == ["0", "lo"], out  # no vport device; lo the only interface
        assert seen["n"] == 0, seen
        run(["python3", "-c", probe.replace("'8.8.8.8', ", "")], timeout=30)
        for _ in range(50):
            if seen["n"]:
                break
            time.sleep(0.1)
        assert seen["n"] > 0  # the probe does reach it from the host


def test_none_mode_serves_nothing_on_the_proxy_address():
    """Without --net allow nothing serves 127.0.0.1:3128 and no proxy
    variable is set (the allow tests show the same curl reaching it)."""
    r = vm("sh", "-c", "echo proxy=${HTTP_PROXY:-none}; curl -s -m 5 -x http://127.0.0.1:3128 http://api.test/; "
           "echo curl=$?", timeout=300)
    assert r.stdout.split() == ["proxy=none", "curl=7"], (r.stdout, r.stderr)


def test_a_channel_broken_by_the_guest_ends_early_and_says_why(tmp_path):
    """A guest that breaks the channel's protocol (the net-bad-frame fault:
    aegis-guest sends a frame of no known type first, as a broken or
    subverted guest would) has its channel ended by the host: the
    command's connections fail from then on, and the reason is in the
    audit's run.end, in --json and on stderr, one line. The same command
    without the fault reaches the server."""
    reason = "netmux: malformed frame (type 0, stream 0, length 0): unknown frame type: Protocol error"
    script = "sleep 1; curl -s -m 10 http://api.test:{port}/; echo curl=$?"
    with http_server() as port:
        opts = allow(f"api.test:{port}", hosts=("api.test=127.0.0.1",))
        r = vm("sh", "-c", script.format(port=port), opts=opts + ("--json",), timeout=300)
        assert json.loads(r.stdout)["stdout"] == "hello from the host\ncurl=0\n", (r.stdout, r.stderr)
        assert "net_error" not in json.loads(r.stdout) and r.stderr == "", r.stderr
        log = str(tmp_path / "audit.jsonl")
        # a cold boot: the fault's kernel argument would key a snapshot of its own
        env = dict(VM_ENV, AEGIS_VM_KERNEL_ARGS="AEGIS_FAULT=net-bad-frame", AEGIS_VM_SNAPSHOT="0")
        before = run_dirs()
        r = aegis("run", "--backend", "vm", *opts, "--json", "--audit", log, "--",
                  "sh", "-c", script.format(port=port), env=env, timeout=300)
        assert not left_behind(before)
    res = json.loads(r.stdout)
    assert r.returncode == 0 and "hello" not in res["stdout"] and "curl=0" not in res["stdout"], (r.stdout, r.stderr)
    assert res["net_error"] == reason, res
    assert r.stderr == f"aegis: vm: the network channel ended early: {reason}\n", r.stderr
    evs = log_events(log)
    assert evs[-1]["type"] == "run.end" and evs[-1]["net_error"] == reason, evs[-1]
    assert not [e for e in evs if e["type"] == "net.connect"], evs  # nothing reached the proxy
    assert aegis("audit", "verify", log).returncode == 0
