"""`aegis run`: the user-facing behaviour of one-shot sandboxes."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import AEGIS, SLOW, aegis, run, sandboxed


def one_line_error(proc, *needles):
    """Aegis errors are exactly one line on stderr, starting 'aegis: '."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aegis: "), proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_echo_prints_and_exits_zero():
    p = sandboxed("echo", "hello from aegis")
    assert p.returncode == 0 and p.stdout == "hello from aegis\n", p


def test_exit_status_is_the_commands():
    assert sandboxed("sh", "-c", "exit 7").returncode == 7


def test_killed_by_signal_is_128_plus_n():
    assert sandboxed("sh", "-c", "kill -9 $$").returncode == 128 + 9
    assert sandboxed("sh", "-c", "kill -SEGV $$").returncode == 128 + 11


def test_timeout_is_124_with_reason():
    start = time.monotonic()
    p = sandboxed("sleep", "30", opts=("--timeout", "1s"))
    assert p.returncode == 124
    # well before sleep's own 30 s; a guest's start and teardown under TCG
    # on a loaded machine take seconds of their own
    assert time.monotonic() - start < (5 if SLOW == 1 else 15)
    one_line_error(p, "timeout")


def test_not_found_is_127():
    p = sandboxed("no-such-command-here")
    assert p.returncode == 127
    one_line_error(p, "no-such-command-here", "not found")


def test_not_executable_is_126():
    p = sandboxed("/etc/hostname")
    assert p.returncode == 126
    one_line_error(p, "/etc/hostname")


@pytest.mark.parametrize("args,needle", [
    (["run", "--bogus", "--", "true"], "--bogus"),
    (["run", "--timeout", "soon", "--", "true"], "soon"),
    (["run", "--memory", "lots", "--", "true"], "lots"),
    (["run", "--pids", "0", "--", "true"], "--pids"),
    (["run", "--env", "NOEQUALS", "--", "true"], "NOEQUALS"),
    (["run", "--cwd", "relative", "--", "true"], "relative"),
    (["run", "--cwd", "/proc/self/fd/3", "--", "true"], "/proc"),
    (["run", "--workspace", "/nonexistent-dir", "--", "true"], "/nonexistent-dir"),
    (["run"], "no command"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_input_is_125_with_one_line(args, needle):
    p = aegis(*args)
    assert p.returncode == 125, p
    one_line_error(p, needle)


def test_bad_cwd_inside_is_125():
    p = sandboxed("true", opts=("--cwd", "/does/not/exist"))
    assert p.returncode == 125
    one_line_error(p, "/does/not/exist")


def test_stdin_is_passed_through():
    p = sandboxed("wc", "-c", input="data\n")
    assert p.returncode == 0 and p.stdout.strip() == "5"


def test_json_result():
    p = sandboxed("sh", "-c", "echo out; echo err >&2; exit 3", opts=("--json",))
    assert p.returncode == 3
    r = json.loads(p.stdout)
    assert r["exit_code"] == 3 and r["end"] == "exited" and r["signal"] is None
    assert r["stdout"] == "out\n" and r["stderr"] == "err\n"
    assert r["wall_ms"] > 0 and r["cpu_user_ms"] >= 0 and r["cpu_sys_ms"] >= 0
    assert r["peak_memory_bytes"] > 0
    assert r["stdout_truncated"] is False


def test_json_ls_root():
    p = sandboxed("ls", "/", opts=("--json",))
    r = json.loads(p.stdout)
    assert set(r["stdout"].split()) >= {"usr", "etc", "proc", "dev", "tmp", "workspace"}


def test_json_signal_and_timeout():
    r = json.loads(sandboxed("sh", "-c", "kill -TERM $$", opts=("--json",)).stdout)
    assert r["end"] == "signaled" and r["signal"] == 15 and r["exit_code"] == 143
    r = json.loads(sandboxed("sleep", "10", opts=("--json", "--timeout", "300ms")).stdout)
    assert r["end"] == "timeout" and r["exit_code"] == 124 and r["limit"] == "timeout"


def test_json_output_is_bounded():
    p = sandboxed("sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' x",
                  opts=("--json", "--output-max", "64k"))
    r = json.loads(p.stdout)
    assert len(r["stdout"]) == 65536 and r["stdout_truncated"] is True
    assert r["exit_code"] == 0


def test_json_error_object():
    p = sandboxed("no-such-command-here", opts=("--json",))
    assert p.returncode == 127
    r = json.loads(p.stdout)
    assert "not found" in r["error"]["message"]


def test_environment_is_clean_plus_env():
    env = dict(os.environ, AEGIS_HOST_ONLY="leak")
    p = run([AEGIS, "run", "--env", "FOO=bar", "--", "env"], env=env)
    lines = dict(l.split("=", 1) for l in p.stdout.splitlines())
    assert lines["FOO"] == "bar"
    assert "AEGIS_HOST_ONLY" not in lines
    assert lines["PATH"].startswith("/usr/local/sbin") and lines["HOME"] == "/root"
    assert lines["LANG"] == "C.UTF-8"


def test_cwd_default_and_flag():
    assert sandboxed("pwd").stdout == "/workspace\n"
    assert sandboxed("pwd", opts=("--cwd", "/tmp")).stdout == "/tmp\n"


def test_default_workspace_is_empty_and_writable():
    p = sandboxed("sh", "-c", "ls -A /workspace | wc -l; echo x > /workspace/f && cat /workspace/f")
    assert p.stdout == "0\nx\n", p


def test_workspace_read_write(tmp_path):
    (tmp_path / "app.py").write_text("print('from app')\n")
    p = sandboxed("sh", "-c", "python3 /workspace/app.py && echo new > /workspace/out.txt",
                  opts=("--workspace", str(tmp_path)))
    assert p.returncode == 0 and p.stdout == "from app\n", p
    out = tmp_path / "out.txt"
    assert out.read_text() == "new\n"
    # Files the sandbox writes belong to the workspace's owner on the host.
    assert out.stat().st_uid == tmp_path.stat().st_uid


def test_workspace_read_only(tmp_path):
    (tmp_path / "f").write_text("keep")
    p = sandboxed("sh", "-c", "cat /workspace/f; echo x > /workspace/f",
                  opts=("--workspace-ro", str(tmp_path)))
    assert p.returncode != 0 and p.stdout == "keep"
    assert "Read-only" in p.stderr
    assert (tmp_path / "f").read_text() == "keep"


def test_tmp_is_size_limited():
    p = sandboxed("sh", "-c", "head -c 3000000 /dev/zero > /tmp/big", opts=("--tmp-size", "1m"))
    # the write fails (ENOSPC), or the engine stops the run for disk_full
    # first (seen in a guest, where the shell is slower to report)
    assert p.returncode != 0 and ("No space left" in p.stderr or "disk_full: limit hit" in p.stderr), p


def test_memory_limit_kills():
    p = sandboxed("python3", "-c", "b = bytearray(512 << 20); print('survived')",
                  opts=("--memory", "64m"))
    assert p.returncode == 137 and "survived" not in p.stdout, p


def test_root_filesystem_shape():
    p = sandboxed("sh", "-c", "for d in /home /root/.. /var /run /srv /mnt /sys; do "
                  "[ -e $d ] && echo present $d; done; cat /etc/passwd; hostname")
    assert "present /home" not in p.stdout and "present /var" not in p.stdout
    assert "present /run" not in p.stdout and "present /srv" not in p.stdout
    assert "present /mnt" not in p.stdout and "present /sys" not in p.stdout
    assert "root:x:0:0" in p.stdout and "aegis" in p.stdout.splitlines()[-1]
    host_users = [l.split(":")[0] for l in open("/etc/passwd") if l.split(":")[2] not in ("0", "65534")]
    for user in host_users:
        assert f"\n{user}:" not in p.stdout


def test_usr_read_only_and_etc_filtered():
    p = sandboxed("sh", "-c", "touch /usr/x; touch /etc/x; ls /etc")
    assert p.stderr.count("Read-only file system") == 2, p.stderr
    assert "shadow" not in p.stdout.split() and "sudoers" not in p.stdout.split()


def test_sandbox_root_is_unprivileged_on_host():
    proc = subprocess.Popen([AEGIS, "run", "--backend", "ns", "--", "sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        uid = None
        while time.monotonic() < deadline and uid is None:
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if f.read() != b"sleep\x0030\x00":
                            continue
                    with open(f"/proc/{pid}/status") as f:
                        uid = int([l for l in f if l.startswith("Uid:")][0].split()[1])
                except OSError:
                    continue
            time.sleep(0.05)
        assert uid is not None, "sandboxed sleep not found on the host"
        assert uid not in (0, os.getuid()) or os.getuid() != 0, uid
        if os.getuid() == 0:
            assert uid >= 1000000000
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM


def test_nothing_outlives_the_run():
    marker = "aegis-outlive-marker"
    p = sandboxed("bash", "-c", f"(exec -a {marker} sleep 300 &); (exec -a {marker} sleep 300 &); "
                  "sleep 0.2; ps -eo args")
    running = [l for l in p.stdout.splitlines() if l.startswith(marker)]
    assert p.returncode == 0 and len(running) == 2, p  # they did run inside
    ps = run(["ps", "-eo", "args"]).stdout
    assert marker not in ps


def test_zombies_are_reaped():
    script = ("for i in $(seq 50); do (sleep 0 &) ; done; sleep 0.5; "
              "ps -eo stat= | grep -c Z || true")
    p = sandboxed("sh", "-c", script)
    assert p.stdout.strip() == "0", p


def test_signals_are_forwarded():
    proc = subprocess.Popen([AEGIS, "run", "--", "sh", "-c",
                             "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.1; done"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 42 and "got-term" in out


def test_no_cgroup_left_behind():
    parent = f"{_cgroup_base()}/aegis"
    before = set(os.listdir(parent)) if os.path.isdir(parent) else set()
    assert sandboxed("true").returncode == 0
    after = set(os.listdir(parent))
    assert not {d for d in after - before if d.startswith("run-")}


def test_uid_map_inside():
    p = sandboxed("cat", "/proc/self/uid_map")
    inside, outside, count = p.stdout.split()
    assert inside == "0" and count == "1" and outside != "0"


def test_aegix_cmd():
    link = os.path.join(os.path.dirname(AEGIS), "aegix")
    p = run([link, "--cmd", "echo hello; exit 4"])
    assert p.stdout == "hello\n" and p.returncode == 4
    p = run([link])
    assert p.returncode == 125
    one_line_error(p, "--cmd")


def test_version_help_doctor():
    v = aegis("--version")
    assert v.returncode == 0 and v.stdout.startswith("aegis ")
    h = aegis("help")
    assert h.returncode == 0 and "run" in h.stdout and "doctor" in h.stdout
    rh = aegis("run", "--help")
    assert rh.returncode == 0 and "--workspace" in rh.stdout and "--timeout" in rh.stdout
    d = aegis("doctor")
    assert d.returncode == 0 and "user namespaces" in d.stdout and "mode: ns" in d.stdout
    dj = json.loads(aegis("doctor", "--json").stdout)
    assert dj["ready"] is True and dj["cgroup_version"] in ("v1", "v2")
    assert dj["seccomp_filter"] is True and dj["landlock_abi"] >= 1



def _cgroup_base():
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "/sys/fs/cgroup"
    return "/sys/fs/cgroup/memory"


def test_killed_supervisor_takes_the_sandbox_with_it():
    """SIGKILL to `aegis run` itself: nothing it started keeps running."""
    marker = "aegis-orphan-marker"
    proc = subprocess.Popen([AEGIS, "run", "--", "bash", "-c", f"exec -a {marker} sleep 60"])
    deadline = time.monotonic() + 10
    while marker not in run(["ps", "-eo", "args"]).stdout:
        assert time.monotonic() < deadline, "sandboxed sleep never started"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while marker in run(["ps", "-eo", "args"]).stdout:
        assert time.monotonic() < deadline, "sandbox outlived its killed supervisor"
        time.sleep(0.05)
    _remove_run_cgroups(proc.pid)


def _remove_run_cgroups(pid):
    """A killed supervisor cannot remove its cgroup; the test does (G3)."""
    for hierarchy in ("", "/memory", "/pids"):
        d = f"/sys/fs/cgroup{hierarchy}/aegis/run-{pid}"
        if os.path.isdir(d):
            os.rmdir(d)


def _spawn_with_pid(pid, argv):
    """Start argv with a chosen pid (root: ns_last_pid), retrying on races."""
    for _ in range(50):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.pid == pid:
            return p
        p.wait()
    raise AssertionError(f"could not start a process with pid {pid}")


def test_stale_run_cgroup_is_replaced():
    """A supervisor killed by SIGKILL leaves its empty run cgroup behind; a
    later run that gets the same pid must replace it, not fail."""
    # the ns backend's own run cgroup on the host (the vm's is QEMU's: test_vm)
    proc = subprocess.Popen([AEGIS, "run", "--backend", "ns", "--", "sleep", "30"])
    stale = f"{_cgroup_base()}/aegis/run-{proc.pid}"
    deadline = time.monotonic() + 10
    while not os.path.isdir(stale):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while open(f"{stale}/cgroup.procs").read().strip():
        assert time.monotonic() < deadline, "sandbox still populated"
        time.sleep(0.02)
    again = _spawn_with_pid(proc.pid, [AEGIS, "run", "--backend", "ns", "--", "echo", "reused"])
    out, err = again.communicate(timeout=30)
    assert again.returncode == 0 and out == "reused\n", err
    assert not os.path.isdir(stale)


def test_parallel_runs_do_not_collide():
    """20 sandboxes at once: each its own uid, cgroup and result."""
    # host uids and cgroups of the ns backend (each vm guest is a machine of its own)
    procs = [subprocess.Popen([AEGIS, "run", "--backend", "ns", "--json", "--", "sh", "-c",
                               f"cat /proc/self/uid_map; exit {i % 7}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(20)]
    uids = set()
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=60)
        r = json.loads(out)
        assert p.returncode == i % 7 and r["exit_code"] == i % 7, (out, err)
        uids.add(r["stdout"].split()[1])
    if os.getuid() == 0:
        assert len(uids) == 20, uids
    parent = f"{_cgroup_base()}/aegis"
    # theirs, by pid: other work on the machine (instances) may have its own
    assert not [d for d in os.listdir(parent) if d in {f"run-{p.pid}" for p in procs}]


def test_command_starts_with_no_signal_blocked():
    """Whatever the caller blocked (a daemon thread blocks SIGTERM), the
    command starts with an empty signal mask and default dispositions."""
    block = lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    p = subprocess.run([AEGIS, "run", "--", "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"],
                       preexec_fn=block, capture_output=True, text=True)
    assert p.stdout.split() == ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"], p
