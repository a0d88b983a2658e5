"""The vm backend's first piece: `aegis run --backend vm` (docs/vm.md).

Each test boots a QEMU microvm guest (TCG unless AEGIS_TEST_VM_ACCEL says
otherwise: TCG is the test mode, and the only mode on hosts without KVM), so
boots are kept few. Every test also checks that no QEMU process and no run
directory outlives the run.
"""
import fcntl
import glob
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import AEGIS, ROOT, aegis

BUILD = os.path.dirname(AEGIS)
VM_ENV = dict(os.environ, AEGIS_VM_ACCEL=os.environ.get("AEGIS_TEST_VM_ACCEL", "tcg"))


@pytest.fixture(scope="module", autouse=True)
def guest_files():
    """vmlinux and the initramfs beside the aegis under test (vm/)."""
    r = subprocess.run([os.path.join(ROOT, "scripts/vm-guest.sh"), BUILD], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(BUILD, "vm/release")) as f:
        return f.read().strip()


def run_dirs():
    return set(glob.glob("/tmp/aegis-vm-*"))


def qemus_of(dirs):
    """QEMU processes whose command line names one of these run directories."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if "qemu-system" in cmd and any(d in cmd for d in dirs):
            found.append(int(pid))
    return found


def vm(*argv, opts=(), env=VM_ENV, **kw):
    """`aegis run --backend vm OPTS -- ARGV`, then check nothing is left."""
    before = run_dirs()
    r = aegis("run", "--backend", "vm", *opts, "--", *argv, env=env, **kw)
    left = run_dirs() - before
    assert not left, f"run directories left behind: {left}"
    return r


def test_guest_has_its_own_kernel(guest_files):
    r = vm("uname", "-r")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == guest_files
    assert r.stdout.strip() != os.uname().release


def test_host_files_are_not_visible(tmp_path):
    canary = "/var/tmp/aegis-vm-canary-%d" % os.getpid()
    with open(canary, "w") as f:
        f.write("host secret\n")
    try:
        assert os.path.exists(canary)
        # /init exists in the guest: the same probe sees a file that is there.
        r = vm("sh", "-c", f"test -e /init && echo init-seen; cat {canary} || echo canary-absent")
    finally:
        os.unlink(canary)
    assert r.stdout.split() == ["init-seen", "canary-absent"], (r.stdout, r.stderr)


def test_stdout_stderr_exit_status_relayed():
    r = vm("sh", "-c", "echo to-out; echo to-err >&2; exit 7")
    assert r.returncode == 7, r.stderr
    assert r.stdout == "to-out\n"
    assert r.stderr == "to-err\n"


def test_json_result_names_the_backend_and_test_mode():
    r = vm("sh", "-c", "printf abc; exit 3", opts=("--json", "--env", "FOO=bar"))
    res = json.loads(r.stdout)
    assert r.returncode == 3 and res["exit_code"] == 3 and res["end"] == "exited"
    assert res["stdout"] == "abc" and res["backend"] == "vm"
    assert res["accel"] == "tcg" and "not a security boundary" in res["isolation"]
    assert res["guest_kernel"] != os.uname().release


def test_env_cwd_and_stdin():
    r = vm("sh", "-c", 'echo "$FOO $(pwd)"; cat', opts=("--env", "FOO=bar", "--cwd", "/tmp"),
           input="from-stdin\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "bar /tmp\nfrom-stdin\n"


def test_signal_death_is_128_plus_n():
    r = vm("sh", "-c", "kill -TERM $$")
    assert r.returncode == 128 + signal.SIGTERM, r.stderr


def test_signal_to_aegis_is_forwarded_to_the_command():
    before = run_dirs()
    p = subprocess.Popen([AEGIS, "run", "--backend", "vm", "--", "sh", "-c", "echo up; exec sleep 60"],
                         env=VM_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "up\n"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 128 + signal.SIGINT, err
    assert not run_dirs() - before


def test_timeout_kills_the_vm():
    t0 = time.monotonic()
    r = vm("sleep", "60", opts=("--timeout", "3s"))
    assert r.returncode == 124, r.stderr
    assert time.monotonic() - t0 < 20
    assert "timeout" in r.stderr


def test_guest_panic_is_reported_and_cleaned_up():
    r = vm("sh", "-c", "echo c > /proc/sysrq-trigger; sleep 30")
    assert r.returncode == 125
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "guest panic" in lines[0], r.stderr


def test_killed_qemu_is_reported_and_cleaned_up():
    before = run_dirs()
    p = subprocess.Popen([AEGIS, "run", "--backend", "vm", "--", "sh", "-c", "echo up; exec sleep 60"],
                         env=VM_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "up\n"
    pids = qemus_of(run_dirs() - before)
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 125
    assert err.strip().splitlines() == [err.strip()] and "killed by signal 9" in err, err
    assert not run_dirs() - before


def test_hung_guest_is_killed_and_reported():
    # No guest greets within 200 ms: the same path as a guest hung in boot.
    r = vm("true", env=dict(VM_ENV, AEGIS_VM_HELLO_TIMEOUT="200ms"))
    assert r.returncode == 125
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "guest hung" in r.stderr, r.stderr
    # QEMU's own view, asked over QMP: the machine runs, the guest is silent.
    assert "QEMU status running" in r.stderr, r.stderr


@pytest.mark.parametrize("flags,named", [
    (("--workspace", "/tmp"), "--workspace"),
    (("--image", "alpine"), "--image"),
    (("--secret", "X"), "--secret"),
    (("--policy", "strict"), "--policy"),
    (("--pids", "10"), "--pids"),
    (("--workspace", "/tmp", "--env", "A=1", "--artifacts", "/tmp/x"), "--workspace, --artifacts"),
])
def test_unsupported_flags_are_refused(flags, named):
    before = run_dirs()
    r = aegis("run", "--backend", "vm", *flags, "--", "true", env=VM_ENV)
    assert r.returncode == 125
    line = r.stderr.strip()
    assert "\n" not in line and "not supported yet" in line and named in line, r.stderr
    assert not run_dirs() - before


def test_doctor_reports_the_vm_backend(guest_files):
    r = aegis("doctor", "--json", env=VM_ENV)
    v = json.loads(r.stdout)["vm"]
    assert v["qemu"].endswith("qemu-system-x86_64")
    assert v["guest_kernel"] == guest_files
    assert v["accel"].startswith("tcg")


def test_command_is_confined_inside_the_guest():
    # The ns backend's steps, inside the VM too: no capabilities,
    # no_new_privs, the seccomp allowlist (two filters); root cannot mount.
    r = vm("sh", "-c", "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; "
           "mount -t tmpfs none /mnt && echo mounted || echo mount-refused")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:4] == ["CapEff:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2",
                                        "mount-refused"], r.stdout


def test_guest_has_no_network_device():
    # -nodefaults and no -netdev: loopback is all there is (network none).
    r = vm("ls", "/sys/class/net")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["lo"]


def test_audit_log_names_backend_accel_and_guest_kernel(tmp_path, guest_files):
    log = str(tmp_path / "audit.jsonl")
    r = vm("sh", "-c", "exit 4", opts=("--audit", log, "--env", "TOKEN=s3cret"))
    assert r.returncode == 4, r.stderr
    # A failed VM is audited too, as an error with its reason.
    p = vm("sh", "-c", "echo c > /proc/sysrq-trigger", opts=("--audit", log))
    assert p.returncode == 125
    with open(log) as f:
        text = f.read()
    events = [json.loads(line) for line in text.splitlines()]
    assert [e["type"] for e in events] == ["run.start", "run.end", "run.start", "run.end"]
    start, end = events[0], events[1]
    assert start["backend"] == "vm" and start["accel"] == "tcg" and start["guest_kernel"] == guest_files
    assert "not a security boundary" in start["isolation"]
    assert "TOKEN" in start["env"] and "s3cret" not in text
    assert end["exit_code"] == 4 and end["end"] == "exited"
    assert events[3]["end"] == "error" and "guest panic" in events[3]["error"]
    assert aegis("audit", "verify", log).returncode == 0


def test_aegis_killed_outright_takes_qemu_along():
    before = run_dirs()
    p = subprocess.Popen([AEGIS, "run", "--backend", "vm", "--", "sh", "-c", "echo up; exec sleep 60"],
                         env=VM_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "up\n"
    dirs = run_dirs() - before
    pids = qemus_of(dirs)
    assert len(pids) == 1
    p.kill()
    p.wait()
    deadline = time.monotonic() + 5
    while qemus_of(dirs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not qemus_of(dirs), "QEMU outlived a SIGKILLed aegis"
    # Its run directory stays until the next run sweeps it (its lock is free).
    assert all(os.path.isdir(d) for d in dirs)
    busy = os.path.join("/tmp", "aegis-vm-test%d" % os.getpid())  # someone else's live run
    os.mkdir(busy, 0o700)
    fd = os.open(os.path.join(busy, "lock"), os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert vm("true").returncode == 0
        assert not any(os.path.exists(d) for d in dirs)
        assert os.path.isdir(busy)
    finally:
        os.close(fd)
        subprocess.run(["rm", "-rf", busy])


def test_large_output_is_relayed_whole_and_json_capture_is_bounded():
    cmd = "head -c 300000 /dev/zero | tr '\\0' a; echo tail-marker >&2"
    r = vm("sh", "-c", cmd)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "a" * 300000 and r.stderr == "tail-marker\n"
    j = vm("sh", "-c", cmd, opts=("--json", "--output-max", "100k"))
    res = json.loads(j.stdout)
    assert len(res["stdout"]) == 100 * 1024 and res["stdout_truncated"] is True
    assert res["stderr"] == "tail-marker\n" and res["stderr_truncated"] is False


def qmp_status(run_dir):
    """query-status over the run's own QMP socket."""
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(os.path.join(run_dir, "qmp.sock"))
    f = s.makefile("rw")
    json.loads(f.readline())  # greeting
    for cmd in ("qmp_capabilities", "query-status"):
        f.write(json.dumps({"execute": cmd}) + "\n")
        f.flush()
        while True:
            reply = json.loads(f.readline())
            if "return" in reply or "error" in reply:
                break
    s.close()
    return reply["return"]["status"]


def test_sigtstp_pauses_the_vm_and_sigcont_resumes_it():
    before = run_dirs()
    p = subprocess.Popen([AEGIS, "run", "--backend", "vm", "--", "sh", "-c",
                          "echo up; read line; echo got-$line"],
                         env=VM_ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline() == "up\n"
        (run_dir,) = run_dirs() - before
        assert qmp_status(run_dir) == "running"
        p.send_signal(signal.SIGTSTP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(f"/proc/{p.pid}/stat") as f:
                if f.read().split(")")[1].split()[0] == "T":
                    break
            time.sleep(0.02)
        assert qmp_status(run_dir) == "paused"
        p.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 5
        while qmp_status(run_dir) != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert qmp_status(run_dir) == "running"
        out, err = p.communicate("x\n", timeout=30)
    finally:
        if p.poll() is None:  # a failed check must not leave a stopped aegis and its VM
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert out == "got-x\n"
    assert not run_dirs() - before
