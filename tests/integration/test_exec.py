"""`aegis exec` and POST /v1/instances/NAME/exec (issue 5): a command in a
running instance behaves as if local (stdio, signals, exit status, a
terminal with -t) and gets exactly the instance's confinement."""
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import AEGIS, api, run, tty_exec


@pytest.fixture
def env(daemon_env):
    return daemon_env


def aegis(env, *args, **kw):
    return run([AEGIS, *args], env=env, **kw)


def state(env, name):
    p = aegis(env, "instance", "info", name)
    return json.loads(p.stdout)["state"] if p.returncode == 0 else None


def start(env, name, *extra, argv=("sleep", "600")):
    p = aegis(env, "instance", "start", "--name", name, *extra, "--", *argv)
    assert p.returncode == 0, p
    deadline = time.monotonic() + 10
    while state(env, name) != "running":
        assert time.monotonic() < deadline, state(env, name)
        time.sleep(0.02)
    # running = its shim is up; the control socket comes right after
    sock = os.path.join(env["AEGIS_STATE_DIR"], "instances", name, "control.sock")
    while not os.path.exists(sock):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_stdio_status_env_cwd(env):
    start(env, "box", "--env", "FROM_INSTANCE=1")
    p = aegis(env, "exec", "box", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (p.returncode, p.stdout, p.stderr) == (7, "out\n", "err\n"), p
    p = aegis(env, "exec", "box", "--", "cat", input="piped stdin\n")
    assert (p.returncode, p.stdout) == (0, "piped stdin\n"), p
    p = aegis(env, "exec", "-e", "EXTRA=2", "-w", "/tmp", "box", "--", "sh", "-c",
              'echo "$FROM_INSTANCE $EXTRA $(pwd)"')
    assert p.stdout == "1 2 /tmp\n", p


def test_start_failures_have_distinct_statuses(env):
    start(env, "box")
    p = aegis(env, "exec", "box", "--", "no-such-command")
    assert p.returncode == 127 and "no-such-command: command not found" in p.stderr, p
    p = aegis(env, "exec", "box", "--", "/etc/passwd")
    assert p.returncode == 126 and "cannot execute" in p.stderr, p
    p = aegis(env, "exec", "-w", "/nowhere", "box", "--", "true")
    assert p.returncode == 125 and "cwd /nowhere" in p.stderr, p
    p = aegis(env, "exec", "nosuch", "--", "true")
    assert p.returncode == 125 and "no instance of that name" in p.stderr, p
    p = aegis(env, "exec", "box")
    assert p.returncode == 125 and "no command given" in p.stderr, p
    p = aegis(env, "exec", "../etc", "--", "true")
    assert p.returncode == 125 and p.stderr.count("\n") == 1, p


def test_exec_gets_the_instance_confinement(env, tmp_path):
    """HOSTILE.md E-24 (capabilities, no_new_privs, seccomp) and the policy's
    argv rules: an exec is no way around the instance's confinement; the
    same checks come out the other way on the host."""
    pol = tmp_path / "p.json"
    pol.write_text(json.dumps({"commands": {"argv_deny": ["echo forbidden"]}}))
    start(env, "box", "--policy", str(pol))
    status = aegis(env, "exec", "box", "--", "cat", "/proc/self/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["CapEff"].strip() == "0000000000000000", fields["CapEff"]
    assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2"
    host = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
    assert host["NoNewPrivs"].strip() == "0"
    # the instance's pid namespace, hostname and PID 1
    p = aegis(env, "exec", "box", "--", "sh", "-c", "hostname; cat /proc/1/comm; ps -o pid= -p 1")
    assert p.stdout.split()[0] == "aegis" and p.stdout.split()[-1] == "1", p
    assert socket.gethostname() != "aegis"
    # an argv rule holds for execs too; outside, the same command runs
    p = aegis(env, "exec", "box", "--", "echo", "forbidden")
    assert p.returncode == 126 and p.stdout == "", p
    assert run(["echo", "forbidden"]).stdout == "forbidden\n"
    p = aegis(env, "exec", "box", "--", "sh", "-c", "/bin/echo forbidden || echo refused")
    assert "refused" in p.stdout and "forbidden\n" not in p.stdout, p


def test_terminal_with_t(env):
    start(env, "box")
    code, out = tty_exec(env, "box", "sh", "-c", "tty; stty size; exit 3")
    assert code == 3, out
    assert b"/dev/pts/0" in out, out  # the sandbox's own devpts, not the host's
    p = aegis(env, "exec", "-t", "box", "--", "true")  # stdin is not a terminal here
    assert p.returncode == 125 and "-t needs a terminal" in p.stderr


def test_signals_reach_the_command(env):
    start(env, "box")
    p = subprocess.Popen([AEGIS, "exec", "box", "--", "sh", "-c", "trap 'echo got-int; exit 9' INT; "
                          "echo ready; while :; do sleep 0.05; done"], env=env, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    p.send_signal(signal.SIGINT)
    assert p.wait(10) == 9 and p.stdout.read() == "got-int\n"
    p = subprocess.Popen([AEGIS, "exec", "box", "--", "sleep", "30"], env=env)
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == 128 + signal.SIGTERM


def test_a_hung_up_client_hangs_up_the_command(env):
    start(env, "box")
    p = subprocess.Popen([AEGIS, "exec", "box", "--", "sh", "-c", "echo ready; exec sleep 300"],
                         env=env, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    p.kill()
    p.wait()
    deadline = time.monotonic() + 10
    while "sleep 300" in aegis(env, "exec", "box", "--", "ps", "-eo", "args").stdout:
        assert time.monotonic() < deadline, "the exec outlived its client"
        time.sleep(0.05)


def test_many_at_once_and_large_output(env):
    start(env, "box")
    results = [None] * 20

    def one(i):
        results[i] = aegis(env, "exec", "box", "--", "sh", "-c", f"echo {i}; echo e{i} >&2; exit {i % 5}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for i, p in enumerate(results):
        assert (p.returncode, p.stdout, p.stderr) == (i % 5, f"{i}\n", f"e{i}\n"), p
    big = subprocess.run([AEGIS, "exec", "box", "--", "seq", "1", "3000000"], env=env, capture_output=True)
    local = subprocess.run(["seq", "1", "3000000"], capture_output=True).stdout
    assert big.returncode == 0 and hashlib.sha256(big.stdout).digest() == hashlib.sha256(local).digest()
    data = os.urandom(8 << 20)
    p = subprocess.run([AEGIS, "exec", "box", "--", "sha256sum"], env=env, input=data, capture_output=True)
    assert p.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest(), p


def test_background_children_do_not_hold_the_exec(env):
    start(env, "box")
    t = time.monotonic()
    p = aegis(env, "exec", "box", "--", "sh", "-c", "sleep 60 & echo started")
    assert p.returncode == 0 and p.stdout == "started\n" and time.monotonic() - t < 5, p


def test_exec_survives_a_daemon_kill(env):
    start(env, "box")
    p = subprocess.Popen([AEGIS, "exec", "box", "--", "sh", "-c", "echo before; read x; echo after $x"],
                         env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "before\n"
    pid = None  # the daemon of this test: the one started with our socket in its environment
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
                environ = open(f"/proc/{d}/environ", "rb").read()
            except OSError:
                continue
            if cmd[0].endswith(b"aegisd") and b"--shim" not in cmd and env["AEGIS_SOCKET"].encode() in environ:
                pid = int(d)
    assert pid
    os.kill(pid, signal.SIGKILL)
    p.stdin.write("ok\n")
    p.stdin.close()
    assert p.stdout.read() == "after ok\n" and p.wait(10) == 0


def test_instance_ending_ends_its_execs(env):
    start(env, "box", argv=("sh", "-c", "sleep 1"))
    p = aegis(env, "exec", "box", "--", "sleep", "30")
    assert p.returncode == 137 and "instance stopped" in p.stderr, p


def test_exec_wakes_a_paused_instance_and_a_disabled_one_refuses(env):
    start(env, "box")
    assert aegis(env, "instance", "pause", "box").returncode == 0
    p = aegis(env, "exec", "box", "--", "echo", "awake")
    assert (p.returncode, p.stdout) == (0, "awake\n"), p
    i = json.loads(aegis(env, "instance", "info", "box").stdout)
    assert i["state"] == "running" and i["activity"]["wake_count"] == 1, i
    assert aegis(env, "instance", "disable", "box").returncode == 0
    p = aegis(env, "exec", "box", "--", "true")
    assert p.returncode == 125 and "not running" in p.stderr, p


def test_json_form(env):
    start(env, "box")
    status, body = api(env, "POST", "/v1/instances/box/exec",
                       {"argv": ["sh", "-c", "cat; echo e >&2; printf '\\377'; exit 2"], "stdin": "in\n"})
    assert status == 200 and body["exit_code"] == 2 and body["signal"] is None, body
    assert body["stdout"] == "in\n\ufffd" and body["stderr"] == "e\n" and not body["timed_out"], body
    status, body = api(env, "POST", "/v1/instances/box/exec", {"argv": ["sleep", "30"], "timeout_ms": 200})
    assert status == 200 and body["timed_out"] and body["exit_code"] == 137, body
    status, body = api(env, "POST", "/v1/instances/box/exec", {"argv": ["head", "-c", "3000000", "/dev/zero"]})
    assert body["stdout_truncated"] and len(body["stdout"]) == 1 << 20, len(body["stdout"])
    status, body = api(env, "POST", "/v1/instances/box/exec", {"argv": ["nope"]})
    assert status == 200 and body["exit_code"] == 127 and body["error"]["code"] == "not_found", body


@pytest.mark.parametrize("body,field", [
    ({"argv": []}, "argv"), ({"argv": "ls"}, "argv"), ({"argv": ["ls", 1]}, "argv"),
    ({"argv": ["ls"], "env": ["NOEQUALS"]}, "env"), ({"argv": ["ls"], "cwd": "rel"}, "cwd"),
    ({"argv": ["ls"], "tty": True}, "tty"), ({"argv": ["ls"], "timeout_ms": -1}, "timeout_ms"),
    ({"argv": ["ls"], "rows": 70000}, "rows"), ({"argv": ["ls"], "bogus": 1}, "bogus"),
])
def test_bad_requests_name_the_field(env, body, field):
    start(env, "box")
    status, got = api(env, "POST", "/v1/instances/box/exec", body)
    assert status == 400 and got["error"]["field"] == field, got
    status, got = api(env, "GET", "/v1/instances/box/exec")
    assert status == 405


def test_info_reports_resources_and_policy(env):
    start(env, "box")
    assert aegis(env, "exec", "box", "--", "sh", "-c", "head -c 50000000 /dev/zero > /tmp/fill").returncode == 0
    i = json.loads(aegis(env, "instance", "info", "box").stdout)
    r = i["resources"]
    assert r["memory_bytes"] >= 50_000_000 and r["memory_peak_bytes"] >= r["memory_bytes"], r  # tmpfs is charged
    assert r["pids"] >= 2 and r["cpu_s"] > 0, r
    assert i["policy_digest"].startswith("sha256:") and len(i["policy_digest"]) == 71 and i["image"] == "host"


def curl(env, method, path, body=None):
    args = ["curl", "-sS", "--unix-socket", env["AEGIS_SOCKET"], "-X", method, "-w", "\n%{http_code}",
            f"http://aegisd{path}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    p = run(args)
    text, _, code = p.stdout.rpartition("\n")
    return int(code), json.loads(text)


def test_full_lifecycle_with_curl(env):
    """The API on its own, as any HTTP client uses it (curl --unix-socket)."""
    assert aegis(env, "up").returncode == 0
    status, body = curl(env, "POST", "/v1/instances", {"name": "c1", "argv": ["sh", "-c", "echo hello; sleep 600"],
                                                       "env": ["K=v"]})
    assert status == 201 and body["state"] == "starting", body
    deadline = time.monotonic() + 10
    while curl(env, "GET", "/v1/instances/c1")[1]["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status, body = curl(env, "POST", "/v1/instances/c1/exec", {"argv": ["sh", "-c", "echo $K"]})
    assert status == 200 and body["stdout"] == "v\n" and body["exit_code"] == 0, body
    while "hello" not in curl(env, "GET", "/v1/instances/c1/logs")[1]["stdout"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert curl(env, "POST", "/v1/instances/c1/pause")[1]["state"] == "paused"
    assert curl(env, "POST", "/v1/instances/c1/resume")[1]["state"] == "running"
    assert curl(env, "POST", "/v1/instances/c1/pause")[1]["state"] == "paused"
    assert curl(env, "POST", "/v1/instances/c1/exec", {"argv": ["true"]})[0] == 200  # wakes it
    assert curl(env, "GET", "/v1/instances/c1")[1]["state"] == "running"
    status, body = curl(env, "GET", "/v1/status")
    assert body["instances"]["total"] == 1 and body["instances"]["running"] == 1, body
    assert curl(env, "GET", "/v1/instances")[1]["instances"][0]["name"] == "c1"
    assert curl(env, "POST", "/v1/instances/c1/disable")[1]["state"] == "disabled"
    assert curl(env, "POST", "/v1/instances/c1/start")[1]["state"] == "starting"
    assert curl(env, "DELETE", "/v1/instances/c1") == (200, {"name": "c1", "state": "deleted"})
    assert curl(env, "GET", "/v1/instances/c1")[0] == 404


def test_execs_are_on_the_instance_audit_chain(env):
    start(env, "box")
    assert aegis(env, "exec", "box", "--", "sh", "-c", "true; ls / >/dev/null").returncode == 0
    log = os.path.join(env["AEGIS_STATE_DIR"], "instances", "box", "audit.jsonl")
    events = [json.loads(line) for line in open(log)]
    argvs = [e["argv"] for e in events if e["type"] == "exec"]
    assert ["sh", "-c", "true; ls / >/dev/null"] in argvs and ["ls", "/"] in argvs, argvs
    p = aegis(env, "audit", "verify", log)
    assert p.returncode == 0 and "hash chain intact" in p.stdout, p
