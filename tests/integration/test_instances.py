"""Persistent named instances through aegisd (issue 5, first part):
start, list, info, delete; they outlive the daemon; names are checked
before anything is made (HOSTILE.md A-08, A-09)."""
import json
import os
import signal
import threading
import time

import pytest

from conftest import AEGIS, run, instance_info as info, wait_instance as wait_state


@pytest.fixture
def env(daemon_env):
    return daemon_env


def aegis(env, *args):
    return run([AEGIS, *args], env=env)



def stdout_of(env, name):
    """The instance's stdout as `aegis logs` gives it (the log is JSON lines, test_logs.py)."""
    return aegis(env, "logs", name).stdout


def log_size(env, name):
    d = os.path.join(env["AEGIS_STATE_DIR"], "instances", name)
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.startswith("output."))



def test_lifecycle(env):
    p = aegis(env, "instance", "start", "--name", "web", "--env", "GREETING=hi", "--", "sh", "-c",
              "echo $GREETING; sleep 60")
    assert p.returncode == 0 and "web: starting" in p.stdout, p
    wait_state(env, "web", "running")
    lst = aegis(env, "instance", "list")
    assert "web" in lst.stdout and "running" in lst.stdout
    i = info(env, "web")
    assert i["policy"] == "default" and i["uptime_s"] >= 0 and i["shim_pid"] > 0
    inst = os.path.join(env["AEGIS_STATE_DIR"], "instances", "web")
    deadline = time.monotonic() + 5
    while stdout_of(env, "web") != "hi\n":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert aegis(env, "instance", "delete", "web").returncode == 0
    assert info(env, "web") is None
    assert not os.path.exists(inst)
    assert "sleep 60" not in run(["ps", "-eo", "args"]).stdout.splitlines()  # its own, not any sleep 600


def test_exit_is_recorded(env):
    aegis(env, "instance", "start", "--name", "job", "--", "sh", "-c", "exit 3")
    i = wait_state(env, "job", "exited")
    assert i["exit"]["exit_code"] == 3 and i["exit"]["end"] == "exited"


def test_instances_outlive_a_killed_daemon(env):
    aegis(env, "instance", "start", "--name", "durable", "--", "sleep", "60")
    i = wait_state(env, "durable", "running")
    pids = run(["pgrep", "-f", "^aegisd --socket " + env["AEGIS_SOCKET"]]).stdout.split()
    assert len(pids) == 1
    os.kill(int(pids[0]), signal.SIGKILL)
    time.sleep(0.2)
    assert os.path.exists(f"/proc/{i['shim_pid']}")  # the shim, and so the sandbox, lives on
    assert wait_state(env, "durable", "running")["shim_pid"] == i["shim_pid"]  # re-adopted by a new daemon


def test_killed_shim_is_failed(env):
    aegis(env, "instance", "start", "--name", "victim", "--", "sleep", "60")
    i = wait_state(env, "victim", "running")
    os.kill(i["shim_pid"], signal.SIGKILL)
    wait_state(env, "victim", "failed")
    assert aegis(env, "instance", "delete", "victim").returncode == 0


@pytest.mark.parametrize("name", ["../x", "a/b", "UPPER", "-lead", "x" * 64, "a b", "$(id)", "a\nb",
                                  "\x1b[2J", "ok;rm"])
def test_bad_names_are_refused_before_anything_is_made(env, name):
    p = aegis(env, "instance", "start", "--name", name, "--", "true")
    assert p.returncode == 125 and len(p.stderr.strip().splitlines()) == 1, p
    inst = os.path.join(env["AEGIS_STATE_DIR"], "instances")
    assert not os.path.isdir(inst) or os.listdir(inst) == []


def test_one_create_of_a_name_wins(env):
    """A-09: 100 parallel creates of one name: exactly one succeeds."""
    assert aegis(env, "up").returncode == 0
    results = []

    def one():
        results.append(aegis(env, "instance", "start", "--name", "race", "--", "sleep", "30").returncode)
    threads = [threading.Thread(target=one) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(0) == 1 and results.count(125) == 99, results
    wait_state(env, "race", "running")
    # one shim (its sandbox's PID 1, a clone of it, shares its command line)
    pids = set(run(["pgrep", "-f", "aegis-shim --shim .*/instances/race( [0-9]+)?$"]).stdout.split())
    parents = {p for p in pids if open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] not in pids}
    assert len(parents) == 1, pids


def test_bad_requests_over_raw_http(env):
    aegis(env, "up")
    sock = env["AEGIS_SOCKET"]
    for body, field in (('{"name":"a","argv":[]}', "argv"), ('{"name":"a","argv":["x"],"extra":1}', "extra"),
                        ('{"name":"a","argv":[1]}', "argv"), ('{"name":"a","argv":["x"],"cwd":"rel"}', "cwd"),
                        ('[1,2]', None), ('{"name":"a","argv":["x"],"name":"b"}', None)):
        p = run(["curl", "-s", "--unix-socket", sock, "-X", "POST", "-d", body, "http://x/v1/instances"])
        err = json.loads(p.stdout)["error"]
        assert err["code"] == "invalid" and (field is None or err.get("field") == field), (body, p.stdout)


def test_logs(env):
    aegis(env, "instance", "start", "--name", "talky", "--", "sh", "-c",
          "for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2; sleep 30")
    wait_state(env, "talky", "running")
    deadline = time.monotonic() + 5
    while "line5" not in aegis(env, "logs", "talky").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    p = aegis(env, "logs", "talky")
    assert p.stdout == "".join(f"line{i}\n" for i in range(1, 6)) and p.stderr == "oops\n", p
    assert aegis(env, "logs", "talky", "--tail", "2").stdout == "line4\nline5\n"
    assert aegis(env, "logs", "nosuch").returncode == 125
    assert aegis(env, "logs", "talky", "--tail", "-1").returncode == 125


def test_pause_resume_and_delete_while_paused(env):
    aegis(env, "instance", "start", "--name", "tick", "--", "sh", "-c", "while :; do echo x; sleep 0.02; done")
    wait_state(env, "tick", "running")
    time.sleep(0.3)
    assert aegis(env, "instance", "pause", "tick").stdout == "tick: paused\n"
    assert info(env, "tick")["state"] == "paused"
    size = log_size(env, "tick")
    time.sleep(0.5)
    assert log_size(env, "tick") == size  # no CPU while paused
    assert aegis(env, "instance", "resume", "tick").stdout == "tick: running\n"
    time.sleep(0.3)
    assert log_size(env, "tick") > size
    assert aegis(env, "instance", "pause", "tick").returncode == 0
    start = time.monotonic()
    assert aegis(env, "instance", "delete", "tick").returncode == 0
    assert time.monotonic() - start < 3  # a paused instance is thawed, then stopped
    assert "while :; do echo x" not in run(["ps", "-eo", "args"]).stdout.replace("aegisd", "")
    assert aegis(env, "instance", "pause", "tick").returncode == 125


def test_delete_stops_a_plain_command_at_once(env):
    """SIGTERM reaches the command (the shim is started from a daemon thread
    that blocks SIGTERM; the command must not inherit that)."""
    aegis(env, "instance", "start", "--name", "sleeper", "--", "sleep", "60")
    wait_state(env, "sleeper", "running")
    start = time.monotonic()
    assert aegis(env, "instance", "delete", "sleeper").returncode == 0
    assert time.monotonic() - start < 2


def test_disable_keeps_the_config_and_start_brings_it_back(env):
    aegis(env, "instance", "start", "--name", "svc", "--", "sh", "-c", "echo up; sleep 60")
    wait_state(env, "svc", "running")
    deadline = time.monotonic() + 5
    while stdout_of(env, "svc") != "up\n":  # the command got going before we stop it
        assert time.monotonic() < deadline, stdout_of(env, "svc")
        time.sleep(0.05)
    assert aegis(env, "instance", "disable", "svc").stdout == "svc: disabled\n"
    assert info(env, "svc")["state"] == "disabled"
    assert "sleep 60" not in run(["ps", "-eo", "args"]).stdout.splitlines()  # its own, not any sleep 600
    assert aegis(env, "instance", "start", "--name", "svc").returncode == 0  # from the stored config
    wait_state(env, "svc", "running")
    again = aegis(env, "instance", "start", "--name", "svc")
    assert again.returncode == 125 and "running" in again.stderr
    deadline = time.monotonic() + 5
    while stdout_of(env, "svc") != "up\nup\n":  # the log goes on across a restart
        assert time.monotonic() < deadline, stdout_of(env, "svc")
        time.sleep(0.05)
