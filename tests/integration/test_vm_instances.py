"""Instances on the vm backend (issue 10, first piece; docs/vm.md "Instances").

`aegis instance start --backend vm` runs the instance's command in a QEMU
microvm guest under its shim: start, logs, stop and start again, delete, a
daemon killed meanwhile (the shim and QEMU live on and are adopted), a shim
killed (QEMU goes with it, nothing is left), pause/resume by QMP stop and
the same host freezer as the ns backend (QEMU is in the run's host cgroup;
the guest's clock is set right after a resume), exec
and --expose over the guest's control channel (port aegis-ctl), and a
policy's network mode allow through the host's egress proxy; the host's
network is refused in one line.

Each test boots guests under TCG (the test mode; AEGIS_TEST_VM_ACCEL
overrides), so timeouts are generous and boots few. Every test checks that
no QEMU, run directory or host cgroup of its instances outlives them.
"""
import datetime
import errno
import glob
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import AEGIS, api, free_port, http_server, run, tty_exec, instance_info as info, wait_instance
from test_vm import guest_files, qmp_status  # noqa: F401 (the autouse fixture: vm-guest.sh for this build)

BOOT_S = 120  # a TCG boot on a loaded 2-CPU machine, with room to spare
COUNTER = "i=0; while :; do echo n=$i; i=$((i+1)); sleep 0.2; done"




@pytest.fixture
def env(daemon_env):
    """A private aegisd whose shims boot guests under TCG; daemon_env deletes
    the instances and stops the daemon after the test."""
    daemon_env["AEGIS_VM_ACCEL"] = os.environ.get("AEGIS_TEST_VM_ACCEL", "tcg")
    return daemon_env


def aegis(env, *args, timeout=120, **kw):
    return run([AEGIS, *args], env=env, timeout=timeout, **kw)


def wait_state(env, name, *want):
    return wait_instance(env, name, *want, timeout=BOOT_S)


def wait_for(what, check, timeout=BOOT_S):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)


def stdout_of(env, name):
    return aegis(env, "logs", name).stdout


def counter(env, name):
    """The last n=N the instance's counter logged (-1: none yet)."""
    found = re.findall(r"^n=(\d+)$", stdout_of(env, name), re.M)
    return int(found[-1]) if found else -1


def qemu_of(shim_pid):
    """The shim's QEMU: (pid, its run directory), or None."""
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except (OSError, ValueError):
            continue
        # (not the QEMU that builds the snapshot template on a first start: it ends)
        if ppid == shim_pid and "qemu-system" in cmd and "/vm-snapshots/.build" not in cmd:
            m = re.search(r"(/tmp/aegis-vm-[A-Za-z0-9]+)/", cmd)
            return int(p), m.group(1) if m else None
    return None


def host_cgroups(shim_pid):
    """The run's host cgroup directories (run-<shim pid>, any hierarchy)."""
    return glob.glob(f"/sys/fs/cgroup/**/run-{shim_pid}", recursive=True)


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def gone(shim_pid, qemu_pid, run_dir):
    """Nothing of the instance's VM left: QEMU, its run directory, its cgroup."""
    def check():
        alive = os.path.exists(f"/proc/{qemu_pid}") and qemu_of(shim_pid)
        return not alive and not os.path.exists(run_dir) and not host_cgroups(shim_pid)
    wait_for("QEMU, run directory and host cgroup gone", check, timeout=30)


def start_vm(env, name, *argv, extra=()):
    p = aegis(env, "instance", "start", "--backend", "vm", "--name", name, "--idle-pause", "0", *extra,
              "--", *argv)
    assert p.returncode == 0 and f"{name}: starting" in p.stdout, p
    i = wait_state(env, name, "running")
    q = wait_for("QEMU under the shim", lambda: qemu_of(i["shim_pid"]), timeout=30)
    return i, q


def test_start_logs_info_stop_restart_delete(env, guest_files):
    i, (qemu, run_dir) = start_vm(env, "box", "sh", "-c", "echo kernel=$(uname -r); sleep 600")
    assert i["backend"] == "vm", i
    lst = aegis(env, "instance", "list")
    assert re.search(r"^box\s+running\s+vm\s", lst.stdout, re.M), lst.stdout
    # the guest's output reaches the instance's log through the shim
    wait_for("the guest's line in the log", lambda: f"kernel={guest_files}\n" == stdout_of(env, "box"))
    assert guest_files != os.uname().release
    # QEMU is the sandbox: in the run's host cgroup, counted by info
    with open(f"/proc/{qemu}/cgroup") as f:
        assert f"/run-{i['shim_pid']}" in f.read()
    i = info(env, "box")
    assert i["resources"]["memory_bytes"] > 64 << 20, i  # the guest's RAM, not an empty cgroup
    # stop (disable) and start again from the stored config
    assert aegis(env, "instance", "disable", "box").stdout == "box: disabled\n"
    assert info(env, "box")["state"] == "disabled"
    gone(i["shim_pid"], qemu, run_dir)
    assert aegis(env, "instance", "start", "--name", "box").returncode == 0
    i2 = wait_state(env, "box", "running")
    qemu2, run_dir2 = wait_for("QEMU again", lambda: qemu_of(i2["shim_pid"]), timeout=30)
    assert i2["backend"] == "vm" and qemu2 != qemu
    wait_for("the log goes on across a restart",
             lambda: stdout_of(env, "box") == f"kernel={guest_files}\n" * 2)
    assert aegis(env, "instance", "delete", "box").returncode == 0
    assert info(env, "box") is None
    gone(i2["shim_pid"], qemu2, run_dir2)


def set_frozen(shim_pid, frozen):
    """The run's host cgroup frozen or thawed by hand (v1 freezer.state, v2 cgroup.freeze)."""
    done = False
    for d in host_cgroups(shim_pid):
        for f, v in (("freezer.state", "FROZEN" if frozen else "THAWED"), ("cgroup.freeze", "1" if frozen else "0")):
            if os.path.exists(os.path.join(d, f)):
                with open(os.path.join(d, f), "w") as out:
                    out.write(v)
                done = True
    assert done, "no freezer for the run's cgroup"


def is_frozen(shim_pid):
    for d in host_cgroups(shim_pid):
        for f, v in (("freezer.state", "FROZEN"), ("cgroup.events", "frozen 1")):
            if os.path.exists(os.path.join(d, f)) and v in open(os.path.join(d, f)).read():
                return True
    return False


def qmp_status_frozen_free(shim_pid, run_dir):
    """QEMU's status while its cgroup is frozen: thawed a moment to ask."""
    set_frozen(shim_pid, False)
    try:
        return qmp_status(run_dir)
    finally:
        set_frozen(shim_pid, True)


def clock_skew(env, name):
    """The guest's wall clock (`date` in an exec) minus the host's, in s: 0
    when it is within the host's times just before and after the exec."""
    before = time.time()
    p = aegis(env, "exec", name, "--", "date", "+%s.%N")
    after = time.time()
    assert p.returncode == 0, p
    guest = float(p.stdout)
    return guest - before if guest < before else guest - after if guest > after else 0.0


def test_pause_stops_the_guest_and_resume_goes_on(env):
    """Pause is QMP stop, then the host freezer (docs/vm.md, Instances): the
    guest makes no progress, QEMU takes no CPU; with the freezer lifted by
    hand QEMU answers "paused" and the guest still stands (stop alone holds
    it). Resume: QMP "running", the counter goes on, and the guest's wall
    clock, which stood for the whole pause, is the host's again."""
    i, (qemu, run_dir) = start_vm(env, "tick", "sh", "-c", COUNTER)
    wait_for("the counter runs", lambda: counter(env, "tick") >= 3)
    assert qmp_status(run_dir) == "running"
    assert abs(clock_skew(env, "tick")) < 1  # the measure itself, before any pause
    assert aegis(env, "instance", "pause", "tick").stdout == "tick: paused\n"
    paused_at = time.monotonic()
    assert info(env, "tick")["state"] == "paused"
    assert is_frozen(i["shim_pid"])
    time.sleep(1)  # what was on its way to the log is in it
    n, ticks = counter(env, "tick"), cpu_ticks(qemu)
    time.sleep(3)  # 15 counts' worth, were it running
    assert counter(env, "tick") == n, "the guest ran while paused"
    assert cpu_ticks(qemu) == ticks, "QEMU used CPU while paused"
    assert os.path.exists(f"/proc/{qemu}")  # its memory kept: the same process
    # the freezer lifted by hand: QEMU answers, its guest stopped by QMP
    set_frozen(i["shim_pid"], False)
    assert qmp_status(run_dir) == "paused"
    time.sleep(2)
    assert counter(env, "tick") == n, "the guest ran under QMP stop"
    set_frozen(i["shim_pid"], True)  # as the daemon left it
    assert aegis(env, "instance", "resume", "tick").stdout == "tick: running\n"
    stood = time.monotonic() - paused_at
    assert info(env, "tick")["state"] == "running" and not is_frozen(i["shim_pid"])
    assert qmp_status(run_dir) == "running"
    skew = clock_skew(env, "tick")
    assert abs(skew) < 1, f"the guest's clock is {skew:+.2f} s off the host's after a {stood:.1f} s pause"
    wait_for("the counter goes on after resume", lambda: counter(env, "tick") >= n + 5, timeout=60)
    # a paused vm instance is thawed and its guest let run, then stopped:
    # it ends as a running one does (its shim tells how), not killed
    assert aegis(env, "instance", "pause", "tick").returncode == 0
    assert aegis(env, "instance", "disable", "tick").returncode == 0
    assert info(env, "tick")["state"] == "disabled"
    with open(os.path.join(env["AEGIS_STATE_DIR"], "instances", "tick", "exit.json")) as f:
        assert json.load(f)["end"] in ("exited", "signaled"), "the shim was killed, not stopped"
    gone(i["shim_pid"], qemu, run_dir)
    assert aegis(env, "instance", "delete", "tick").returncode == 0


def test_a_pause_that_qmp_refuses_leaves_it_running(env):
    """No half pause: when QMP cannot stop the guest (its socket moved away
    here), the pause fails in one line naming QMP, nothing is frozen, the
    command runs on and no instance.pause is recorded; with QMP back the
    same pause works."""
    i, (qemu, run_dir) = start_vm(env, "stubborn", "sh", "-c", COUNTER)
    wait_for("the counter runs", lambda: counter(env, "stubborn") >= 3)
    sock = os.path.join(run_dir, "qmp.sock")
    os.rename(sock, sock + ".away")
    try:
        p = aegis(env, "instance", "pause", "stubborn")
        assert p.returncode != 0 and "QMP" in p.stderr and len(p.stderr.splitlines()) == 1, p
        assert info(env, "stubborn")["state"] == "running"
        assert not is_frozen(i["shim_pid"])
        n = counter(env, "stubborn")
        wait_for("the counter goes on", lambda: counter(env, "stubborn") >= n + 3, timeout=60)
    finally:
        os.rename(sock + ".away", sock)
    assert aegis(env, "instance", "pause", "stubborn").returncode == 0
    assert qmp_status_frozen_free(i["shim_pid"], run_dir) == "paused"
    assert aegis(env, "instance", "resume", "stubborn").returncode == 0
    log = os.path.join(env["AEGIS_STATE_DIR"], "instances", "stubborn", "audit.jsonl")
    wait_for("instance.resume on the chain", lambda: '"instance.resume"' in open(log).read(), timeout=30)
    types = [json.loads(line)["type"] for line in open(log)]
    assert types.count("instance.pause") == 1 and types.count("instance.resume") == 1, types
    assert aegis(env, "instance", "delete", "stubborn").returncode == 0
    gone(i["shim_pid"], qemu, run_dir)


def test_a_hung_vm_pause_holds_up_no_other_instance(env):
    """One instance's hang is its own. With a's shim stopped (SIGSTOP), a
    pause of a waits out the shim's answer (15 s) and fails in one line
    naming it; meanwhile vm instance b pauses and resumes and an ns instance
    c is created, each within a few seconds (aegisd once held one lock for
    every instance's transitions across that wait), and another pause of a
    is refused at once: 409, a is busy. With its shim let go, the shim finds
    the pause aegisd gave up on past its deadline and does not do it: a's
    guest still runs, as aegisd said. Then a pauses, resumes (its guest
    runs) and is deleted."""
    for name in ("a", "b"):
        p = aegis(env, "instance", "start", "--backend", "vm", "--name", name, "--idle-pause", "0",
                  "--", "sleep", "1000")
        assert p.returncode == 0, p
    ia, ib = wait_state(env, "a", "running"), wait_state(env, "b", "running")
    qa = wait_for("a's QEMU", lambda: qemu_of(ia["shim_pid"]), timeout=30)
    qb = wait_for("b's QEMU", lambda: qemu_of(ib["shim_pid"]), timeout=30)
    os.kill(ia["shim_pid"], signal.SIGSTOP)  # a's shim: ours, started by this test's daemon
    try:
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            hung = pool.submit(api, env, "POST", "/v1/instances/a/pause", timeout=60)
            time.sleep(1.5)  # a's pause is waiting on its shim by now
            assert not hung.done(), hung.result()

            def quick(*args):
                t = time.monotonic()
                p = aegis(env, *args, timeout=30)
                took = time.monotonic() - t
                assert p.returncode == 0 and took < 8, (args, f"{took:.1f} s", p)
                return p

            assert quick("instance", "pause", "b").stdout == "b: paused\n"
            assert quick("instance", "resume", "b").stdout == "b: running\n"
            quick("instance", "start", "--name", "c", "--", "sleep", "1000")
            t = time.monotonic()
            status, body = api(env, "POST", "/v1/instances/a/pause", timeout=30)
            assert status == 409 and time.monotonic() - t < 8, (status, body)
            assert "a" in body["error"]["message"] and "busy" in body["error"]["message"], body
            status, body = hung.result()
            took = time.monotonic() - started
        assert status == 500 and "did not answer" in body["error"]["message"], (status, body)
        assert "\n" not in body["error"]["message"] and took > 10, (took, body)
    finally:
        os.kill(ia["shim_pid"], signal.SIGCONT)
    time.sleep(3)  # the shim takes the stale request at once; its QMP would answer in ms
    assert qmp_status(qa[1]) == "running"
    assert info(env, "a")["state"] == "running" and not is_frozen(ia["shim_pid"])
    assert wait_state(env, "c", "running")
    assert aegis(env, "instance", "pause", "a").stdout == "a: paused\n"
    assert aegis(env, "instance", "resume", "a").stdout == "a: running\n"
    assert qmp_status(qa[1]) == "running"
    for name, i, (qemu, run_dir) in (("a", ia, qa), ("b", ib, qb)):
        assert aegis(env, "instance", "delete", name).returncode == 0
        gone(i["shim_pid"], qemu, run_dir)


def test_a_hung_idle_pause_holds_up_no_other_idle_pause(env):
    """The idle sweep does not wait on one instance's hang either: with vm
    instance a's shim stopped while its idle pause waits on it (15 s), an
    ns instance b started meanwhile is idle-paused on its own time (2 s),
    not after a's pause gives up (the sweep once took instances one at a
    time). With its shim let go, a is idle-paused too."""
    p = aegis(env, "instance", "start", "--backend", "vm", "--name", "a", "--idle-pause", "4s",
              "--", "sleep", "1000")
    assert p.returncode == 0, p
    ia = wait_state(env, "a", "running")
    qa = wait_for("a's QEMU", lambda: qemu_of(ia["shim_pid"]), timeout=30)
    os.kill(ia["shim_pid"], signal.SIGSTOP)  # a's shim: ours, started by this test's daemon
    try:
        time.sleep(6)  # a's idle pause (due at 4 s) is waiting on its shim by now
        assert info(env, "a")["state"] == "running"
        p = aegis(env, "instance", "start", "--name", "b", "--idle-pause", "2s", "--", "sleep", "1000")
        assert p.returncode == 0, p
        t = time.monotonic()
        wait_instance(env, "b", "paused", timeout=12)
        took = time.monotonic() - t
        # a's pause gives up 15 s after it began, ~13 s from b's start
        assert took < 8, f"b idle-paused {took:.1f} s after its start"
    finally:
        os.kill(ia["shim_pid"], signal.SIGCONT)
    wait_state(env, "a", "paused")
    assert qmp_status_frozen_free(ia["shim_pid"], qa[1]) == "paused"
    for name in ("a", "b"):
        assert aegis(env, "instance", "delete", name).returncode == 0
    gone(ia["shim_pid"], *qa)


def test_instance_outlives_a_killed_daemon(env):
    i, (qemu, run_dir) = start_vm(env, "durable", "sh", "-c", COUNTER)
    pids = run(["pgrep", "-f", "^aegisd --socket " + env["AEGIS_SOCKET"]]).stdout.split()
    assert len(pids) == 1
    os.kill(int(pids[0]), signal.SIGKILL)
    time.sleep(0.5)
    assert os.path.exists(f"/proc/{i['shim_pid']}") and qemu_of(i["shim_pid"]) == (qemu, run_dir)
    again = wait_state(env, "durable", "running")  # a new daemon, started on demand, adopts it
    assert again["shim_pid"] == i["shim_pid"] and again["backend"] == "vm"
    n = counter(env, "durable")
    wait_for("the guest still runs", lambda: counter(env, "durable") > n, timeout=60)
    assert aegis(env, "instance", "pause", "durable").returncode == 0  # the adopted one pauses too
    assert info(env, "durable")["state"] == "paused"
    assert aegis(env, "instance", "delete", "durable").returncode == 0
    gone(i["shim_pid"], qemu, run_dir)


@pytest.mark.parametrize("paused", [False, True])
def test_killed_shim_takes_qemu_along(env, paused):
    i, (qemu, run_dir) = start_vm(env, "victim", "sleep", "600")
    assert os.path.isdir(run_dir) and host_cgroups(i["shim_pid"])
    if paused:  # a frozen QEMU cannot even die until thawed: the daemon's cleanup does
        assert aegis(env, "instance", "pause", "victim").returncode == 0
    os.kill(i["shim_pid"], signal.SIGKILL)
    failed = wait_state(env, "victim", "failed")
    assert "killed" in failed["exit"]["error"]
    gone(i["shim_pid"], qemu, run_dir)
    assert aegis(env, "instance", "delete", "victim").returncode == 0


def test_a_network_policy_is_refused_in_one_line_and_exec_expose_are_not(env, tmp_path):
    policy = tmp_path / "net.json"
    policy.write_text(json.dumps({"network": {"mode": "host"}}))
    p = aegis(env, "instance", "start", "--backend", "vm", "--name", "web", "--policy", str(policy), "--",
              "sleep", "600")
    assert p.returncode == 125 and p.stderr.count("\n") == 1, p
    assert "policy" in p.stderr and "refuses the policy's network mode 'host'" in p.stderr
    assert info(env, "web") is None  # nothing was made
    # the same request on the ns backend is taken: the refusal is the vm's
    p = aegis(env, "instance", "start", "--backend", "ns", "--name", "nsweb", "--policy", str(policy), "--",
              "sleep", "600")
    assert p.returncode == 0, p
    # the API: a bad backend is invalid; an expose on vm is taken now
    status, body = api(env, "POST", "/v1/instances", {"name": "x", "argv": ["true"], "backend": "xen"})
    assert status == 400 and body["error"]["field"] == "backend", body
    status, body = api(env, "POST", "/v1/instances", {"name": "x", "argv": ["true"], "backend": "vm",
                                                      "expose": [f"{free_port()}:80"], "idle_pause_s": 0})
    assert status in (200, 201, 202) and "error" not in body, (status, body)
    p = aegis(env, "instance", "start", "--backend", "xen", "--name", "y", "--", "true")
    assert p.returncode == 125 and "--backend must be ns or vm" in p.stderr
    assert aegis(env, "instance", "delete", "x").returncode == 0


def test_idle_pause_then_stop_and_a_start_boots_it_again(env):
    p = aegis(env, "instance", "start", "--backend", "vm", "--name", "idler", "--idle-pause", "2s",
              "--idle-stop", "8s", "--", "sh", "-c", COUNTER)
    assert p.returncode == 0, p
    i = wait_state(env, "idler", "running", "paused")
    qemu, run_dir = wait_for("QEMU under the shim", lambda: qemu_of(i["shim_pid"]), timeout=30)
    wait_state(env, "idler", "paused")  # the daemon's idle sweep stopped and froze it
    assert is_frozen(i["shim_pid"]) and qmp_status_frozen_free(i["shim_pid"], run_dir) == "paused"
    stopped = wait_state(env, "idler", "stopped")
    assert stopped["activity"]["paused_s"] >= 2, stopped
    gone(i["shim_pid"], qemu, run_dir)
    # the idle stop let the guest run first: it ended as a running one does, not killed
    with open(os.path.join(env["AEGIS_STATE_DIR"], "instances", "idler", "exit.json")) as f:
        assert json.load(f)["end"] in ("exited", "signaled")
    assert aegis(env, "instance", "start", "--name", "idler").returncode == 0
    again = wait_state(env, "idler", "running", "paused")
    assert again["shim_pid"] != i["shim_pid"] and again["backend"] == "vm"
    # the daemon's events and the guest's relayed engine events: one chain
    log = os.path.join(env["AEGIS_STATE_DIR"], "instances", "idler", "audit.jsonl")
    wait_for("the second boot's run.start on record",
             lambda: sum(json.loads(line)["type"] == "run.start" for line in open(log)) >= 1)
    events = [json.loads(line) for line in open(log)]
    types = [e["type"] for e in events]
    for t in ("instance.pause", "instance.stop", "run.start", "run.end"):
        assert t in types, types
    assert all(e.get("backend") == "vm" for e in events if e["type"] == "run.start"), events
    assert aegis(env, "audit", "verify", log).returncode == 0
    assert aegis(env, "instance", "delete", "idler").returncode == 0
    assert not [d for d in glob.glob("/tmp/aegis-vm-*") if d == run_dir]


def test_exec_runs_in_the_guest_sandbox_of_the_main_command(env):
    """Execs over the guest's control channel (docs/vm.md, port aegis-ctl):
    streamed and buffered, status, stdout, stderr, stdin, a terminal; in
    the same sandbox as the main command (its /tmp), on the guest's kernel;
    a paused instance is woken as on ns, a stopping one ends its execs with
    instance_stopped, a disabled one refuses; the argv on the audit chain."""
    i, (qemu, run_dir) = start_vm(env, "box", "sh", "-c", "echo from-main > /tmp/mark; sleep 600")
    p = aegis(env, "exec", "box", "--", "sh", "-c", "cat /tmp/mark; uname -r; cat; echo err >&2; exit 7",
              input="piped stdin\n")
    assert p.returncode == 7 and p.stderr == "err\n", p
    mark, kernel, piped = p.stdout.splitlines()
    assert (mark, piped) == ("from-main", "piped stdin"), p
    assert kernel != os.uname().release, kernel  # the guest's kernel, not the host's
    # the JSON form (no Upgrade): stdin in the body, output and status back
    status, body = api(env, "POST", "/v1/instances/box/exec",
                       {"argv": ["sh", "-c", "cat; echo e >&2; exit 2"], "stdin": "in\n"})
    assert status == 200 and (body["exit_code"], body["stdout"], body["stderr"]) == (2, "in\n", "e\n"), body
    status, body = api(env, "POST", "/v1/instances/box/exec", {"argv": ["nope"]})
    assert status == 200 and body["exit_code"] == 127 and body["error"]["code"] == "not_found", body
    status, body = api(env, "POST", "/v1/instances/box/exec", {"argv": ["sleep", "30"], "timeout_ms": 300})
    assert status == 200 and body["timed_out"] and body["exit_code"] == 137, body
    # HOSTILE.md N-08: the engine's control socket in the guest (an abstract
    # name in the guest's root network namespace, which serves every exec
    # above) is out of the sandbox's reach: it has a network namespace of its own
    p = aegis(env, "exec", "box", "--", "python3", "-c",
              "import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
              "try: s.connect('\\0aegis-guest-control'); print('connected')\n"
              "except OSError as e: print(e.errno)")
    assert p.returncode == 0 and p.stdout.strip() == str(errno.ECONNREFUSED), p
    # a user who hangs up hangs up the exec (SIGHUP through the guest's engine)
    c = subprocess.Popen([AEGIS, "exec", "box", "--", "sh", "-c", "echo ready; exec sleep 300"],
                         env=env, stdout=subprocess.PIPE, text=True)
    assert c.stdout.readline() == "ready\n"
    c.kill()
    c.wait()
    c.stdout.close()
    wait_for("the exec gone with its user",
             lambda: "sleep 300" not in aegis(env, "exec", "box", "--", "ps", "-eo", "args").stdout, timeout=30)
    # many at once, each with its own stream over the one port, and a large output intact
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda n: aegis(env, "exec", "box", "--", "sh", "-c", f"echo {n}; exit {n}"),
                             range(8)))
    assert [(o.returncode, o.stdout) for o in outs] == [(n, f"{n}\n") for n in range(8)], outs
    p = aegis(env, "exec", "box", "--", "sh", "-c", "head -c 4000000 /dev/urandom > /tmp/big; sha256sum /tmp/big")
    assert p.returncode == 0, p
    big = subprocess.run([AEGIS, "exec", "box", "--", "cat", "/tmp/big"], env=env, capture_output=True, timeout=120)
    assert big.returncode == 0 and len(big.stdout) == 4000000, (big.returncode, len(big.stdout))
    assert hashlib.sha256(big.stdout).hexdigest() == p.stdout.split()[0]
    # a terminal: the sandbox's own devpts in the guest
    code, out = tty_exec(env, "box", "sh", "-c", "tty; exit 3")
    assert code == 3 and b"/dev/pts/0" in out, out
    # paused (the host freezer holds QEMU): the exec wakes it, as on ns
    assert aegis(env, "instance", "pause", "box").returncode == 0
    p = aegis(env, "exec", "box", "--", "echo", "awake")
    assert (p.returncode, p.stdout) == (0, "awake\n"), p
    woke = info(env, "box")
    assert woke["state"] == "running" and woke["activity"]["wake_count"] == 1, woke
    # the instance stopping under a running exec: the exec ends, told why
    stopper = threading.Timer(3, lambda: aegis(env, "instance", "disable", "box"))
    stopper.start()
    t = time.monotonic()
    p = aegis(env, "exec", "box", "--", "sleep", "60")
    stopper.join()
    assert p.returncode == 137 and "instance stopped" in p.stderr, p
    assert time.monotonic() - t < 40, "the exec outlived its instance"
    gone(i["shim_pid"], qemu, run_dir)
    # stopped: a clear refusal, nothing hangs
    p = aegis(env, "exec", "box", "--", "true")
    assert p.returncode == 125 and p.stderr == "aegis: exec: the instance is not running\n", p
    # the guest engine's events are on the instance's chain: each exec's argv
    log = os.path.join(env["AEGIS_STATE_DIR"], "instances", "box", "audit.jsonl")
    events = [json.loads(line) for line in open(log)]
    argvs = [e["argv"] for e in events if e["type"] == "exec"]
    assert ["sh", "-c", "cat /tmp/mark; uname -r; cat; echo err >&2; exit 7"] in argvs, argvs
    assert ["echo", "awake"] in argvs and ["uname", "-r"] in argvs, argvs
    assert aegis(env, "audit", "verify", log).returncode == 0
    assert aegis(env, "instance", "delete", "box").returncode == 0


def test_expose_serves_the_guest_and_wakes_it(env, tmp_path):
    """--expose HOST:GUEST to a server in the guest, through the router and
    the control channel: byte-exact for 1 MiB, and a connection wakes the
    instance when it is idle-paused and when it is idle-stopped (a new
    boot). HOSTILE.md A-12: only the exposed port is reachable."""
    ws = tmp_path / "ws"
    ws.mkdir()
    blob = os.urandom(1 << 20)
    (ws / "blob").write_bytes(blob)
    # the snapshot template first: a start that builds it could be idle-paused meanwhile
    assert aegis(env, "run", "--backend", "vm", "--", "true").returncode == 0
    port, trap_port, host_port = free_port(), free_port(), free_port()
    env["AEGIS_WAKE_WAIT_MS"] = "15000"  # the A-12 probe below waits this long for a listener
    p = aegis(env, "instance", "start", "--backend", "vm", "--name", "web", "--idle-pause", "2s",
              "--idle-stop", "6s", "--expose", f"{port}:8000", "--expose", f"{trap_port}:{host_port}",
              "--workspace", str(ws), "--",
              "python3", "-m", "http.server", "8000", "--bind", "127.0.0.1", "--directory", "/workspace")
    assert p.returncode == 0, p
    first = wait_state(env, "web", "running", "paused")

    def fetch(path="/blob"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=BOOT_S) as r:
            return r.status, r.read()

    def served():
        try:
            return fetch()
        except OSError:
            return None
    assert wait_for("the guest's server through --expose", served) == (200, blob)
    assert hashlib.sha256(fetch()[1]).digest() == hashlib.sha256(blob).digest()
    # HOSTILE.md A-12: a forward reaches the guest sandbox's own port, never
    # the host's: a host listener on the forwarded port number gets nothing
    # (it does take a direct connection: the probe works)
    with socket.create_server(("127.0.0.1", host_port)) as trap:
        trap.settimeout(0.5)
        socket.create_connection(("127.0.0.1", host_port), timeout=5).close()
        trap.accept()[0].close()
        with socket.create_connection(("127.0.0.1", trap_port), timeout=60) as c:
            c.settimeout(60)
            assert c.recv(100) == b""  # the router gave up: nothing listens there in the sandbox
        with pytest.raises(socket.timeout):
            trap.accept()
    wait_state(env, "web", "paused")
    assert fetch() == (200, blob)  # a connection resumes it
    assert info(env, "web")["state"] == "running"
    stopped = wait_state(env, "web", "stopped")
    assert stopped["activity"]["wake_count"] == 1, stopped
    assert fetch() == (200, blob)  # and boots it again
    again = info(env, "web")
    assert again["state"] == "running" and again["activity"]["wake_count"] == 2, again
    assert again["shim_pid"] != first["shim_pid"]
    assert aegis(env, "instance", "delete", "web").returncode == 0


def test_allow_policy_goes_through_the_host_proxy_onto_the_chain(env, tmp_path):
    """N-02: an instance with an allow policy reaches the allowed host
    through the host's egress proxy (the guest's only way out), a host the
    rules do not name gets 403 with the reason though it resolves to the
    same server, and both connections are net.connect events of the
    instance's own audit chain, which verifies."""
    with http_server() as port:
        policy = tmp_path / "allow.json"
        policy.write_text(json.dumps({"network": {
            "mode": "allow", "allow": [f"api.test:{port}"],
            "hosts": {"api.test": "127.0.0.1", "other.test": "127.0.0.1"}}}))
        script = (f"curl -s -m 60 http://api.test:{port}/; echo ---; "
                  f"curl -s -m 60 -i http://other.test:{port}/; echo ---; "
                  f"curl -s -m 5 --noproxy '*' http://127.0.0.1:{port}/; echo direct=$?")
        p = aegis(env, "instance", "start", "--backend", "vm", "--name", "net", "--idle-pause", "0",
                  "--policy", str(policy), "--", "sh", "-c", script)
        assert p.returncode == 0, p
        ended = wait_state(env, "net", "exited", "failed")
    assert ended["state"] == "exited" and ended["exit"]["exit_code"] == 0, ended
    log = os.path.join(env["AEGIS_STATE_DIR"], "instances", "net", "audit.jsonl")
    events = [json.loads(line) for line in open(log)]
    allowed, denied, direct = stdout_of(env, "net").split("---\n")
    assert allowed == "hello from the host\n", (allowed, port, [e for e in events if e["type"] == "net.connect"])
    assert "403 Forbidden" in denied and f"no allow rule matches other.test:{port}" in denied, denied
    assert "hello" not in denied
    assert direct.startswith("direct=") and direct != "direct=0\n", direct  # no way around the proxy
    types = [e["type"] for e in events]
    assert types[0] == "run.start" and types[-1] == "run.end", types
    assert events[0]["backend"] == "vm" and events[0]["network"] == "allow", events[0]
    conns = [(e["host"], e["port"], e["verdict"], e["id"]) for e in events if e["type"] == "net.connect"]
    assert sorted(conns) == [("api.test", port, "allow", events[0]["id"]),
                             ("other.test", port, "deny", events[0]["id"])], conns
    assert "net_error" not in events[-1], events[-1]
    assert aegis(env, "audit", "verify", log).returncode == 0
    assert aegis(env, "instance", "delete", "net").returncode == 0


def test_the_chain_shows_the_running_boot(env, tmp_path):
    """The guest engine's events are relayed as they come, not at the boot's
    end: while the instance runs its chain has run.start (backend vm), a
    connection through the host's proxy (net.connect, held no longer than
    its lag), and an exec's argv as soon as the exec returns; run.end (with
    boot_ms) only once it stops, after the daemon's own events; one chain
    that verifies throughout."""
    with http_server() as port:
        policy = tmp_path / "allow.json"
        policy.write_text(json.dumps({"network": {"mode": "allow", "allow": [f"api.test:{port}"],
                                                  "hosts": {"api.test": "127.0.0.1"}}}))
        p = aegis(env, "instance", "start", "--backend", "vm", "--name", "live", "--idle-pause", "0",
                  "--policy", str(policy), "--", "sh", "-c",
                  f"curl -s -m 60 http://api.test:{port}/; exec sleep 600")
        assert p.returncode == 0, p
        i = wait_state(env, "live", "running")
        log = os.path.join(env["AEGIS_STATE_DIR"], "instances", "live", "audit.jsonl")

        def events():
            return [json.loads(line) for line in open(log)]

        start = events()[0]
        assert start["type"] == "run.start" and start["backend"] == "vm" and start["accel"] == "tcg", start
        conn = wait_for("net.connect on the running boot's chain",
                        lambda: [e for e in events() if e["type"] == "net.connect"], timeout=60)
        assert conn[0]["host"] == "api.test" and conn[0]["id"] == start["id"], conn
    p = aegis(env, "exec", "live", "--", "sh", "-c", "echo marked-exec")
    assert p.returncode == 0 and p.stdout == "marked-exec\n", p
    running = events()
    assert ["sh", "-c", "echo marked-exec"] in [e["argv"] for e in running if e["type"] == "exec"], running
    assert "run.end" not in [e["type"] for e in running], running
    assert aegis(env, "audit", "verify", log).returncode == 0
    assert aegis(env, "instance", "pause", "live").returncode == 0
    assert aegis(env, "instance", "resume", "live").returncode == 0
    # (the daemon records a pause and a resume from a thread of their own)
    wait_for("instance.resume on the chain", lambda: "instance.resume" in [e["type"] for e in events()], 30)
    qemu, run_dir = qemu_of(i["shim_pid"])
    assert aegis(env, "instance", "disable", "live").returncode == 0
    gone(i["shim_pid"], qemu, run_dir)
    done = events()
    types = [e["type"] for e in done]
    assert types.count("run.start") == 1 and types.count("run.end") == 1, types
    assert types.index("instance.pause") < types.index("instance.resume") < types.index("run.end"), types
    assert done[-1]["type"] == "run.end" and done[-1]["boot_ms"] > 0, done[-1]
    assert [e["seq"] for e in done] == list(range(done[0]["seq"], done[0]["seq"] + len(done))), done
    assert aegis(env, "audit", "verify", log).returncode == 0
    assert aegis(env, "instance", "delete", "live").returncode == 0


def test_idle_clock_starts_when_the_command_does(env):
    """The first start of a vm instance builds the snapshot template, then
    restores it: seconds under TCG, longer than this instance's idle pause.
    The daemon's idle clock starts when the shim says the command runs, so
    the instance is paused only after its command ran, and a whole idle
    pause after that (not while it boots)."""
    pause_s = 2
    created = time.time()
    p = aegis(env, "instance", "start", "--backend", "vm", "--name", "slow", "--idle-pause", f"{pause_s}s",
              "--idle-stop", "0", "--", "sh", "-c", "date +%s.%N; sleep 600")
    assert p.returncode == 0, p
    i = wait_state(env, "slow", "paused")
    out = stdout_of(env, "slow")
    assert out, "paused before its command ran"
    ran = float(out.split()[0])  # the guest's clock is the host's (set by the request)
    assert ran - created > pause_s, "the first start was not slower than the idle pause: this proves nothing"
    log = os.path.join(env["AEGIS_STATE_DIR"], "instances", "slow", "audit.jsonl")
    pauses = [json.loads(line) for line in open(log) if '"instance.pause"' in line]
    assert len(pauses) == 1 and pauses[0]["reason"] == "idle", pauses
    paused_at = datetime.datetime.strptime(pauses[0]["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    # idle from the guest's STARTED on: the engine's own set-up of the
    # sandbox in the guest (under TCG ~0.5 s) and the 200 ms sweep before
    # the command's first line are the only time counted before it
    assert paused_at - ran >= pause_s - 1, (paused_at, ran)
    qemu, run_dir = qemu_of(i["shim_pid"])
    assert aegis(env, "instance", "delete", "slow").returncode == 0
    gone(i["shim_pid"], qemu, run_dir)
