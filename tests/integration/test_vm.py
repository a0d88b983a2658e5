"""The vm backend: `aegis run --backend vm` runs the engine in a guest (docs/vm.md).

Each test boots a QEMU microvm guest (TCG unless AEGIS_TEST_VM_ACCEL says
otherwise: TCG is the test mode, and the only mode on hosts without KVM), so
boots are kept few. Every test also checks that no QEMU process and no run
directory outlives the run. Negative tests prove the probe works without
the rule (or on the host) as well, so a broken probe cannot pass.
"""
import fcntl
import glob
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import AEGIS, PROBE, ROOT, aegis, file_data, probe_outside, run

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


def parent_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def dirs_of(parent, before):
    """The run directories made since `before` whose QEMU is parent's child:
    ours, whatever else runs VMs on this machine."""
    return {d for d in run_dirs() - before if any(parent_of(q) == parent for q in qemus_of({d}))}


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


def left_behind(before):
    """Run directories made since `before` that outlived their run: no
    QEMU names them and they are still there a moment later (another
    user's live run on a shared machine has its QEMU, or is gone by then)."""
    new = run_dirs() - before
    if not new:
        return set()
    time.sleep(0.5)
    return {d for d in new if os.path.isdir(d) and not qemus_of({d}) and not lock_held(d)}


def lock_held(d):
    """A run holds its directory's lock for its whole life (before QEMU
    starts too): a held lock is a live run, maybe another user's."""
    try:
        fd = os.open(os.path.join(d, "lock"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def vm(*argv, opts=(), env=VM_ENV, **kw):
    """`aegis run --backend vm OPTS -- ARGV`, then check nothing is left."""
    before = run_dirs()
    r = aegis("run", "--backend", "vm", *opts, "--", *argv, env=env, timeout=kw.pop("timeout", 180), **kw)
    left = left_behind(before)
    assert not left, f"run directories left behind: {left}"
    return r


def test_guest_has_its_own_kernel(guest_files):
    r = vm("uname", "-r")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == guest_files
    assert r.stdout.strip() != os.uname().release


@pytest.mark.parametrize("where", ["/root", "/tmp", "/home", "/var/tmp"])
def test_host_files_are_not_visible(where):
    os.makedirs(where, exist_ok=True)
    canary = os.path.join(where, "aegis-vm-canary-%d" % os.getpid())
    with open(canary, "w") as f:
        f.write("host secret\n")
    os.chmod(canary, 0o644)
    try:
        assert open(canary).read() == "host secret\n"
        # The same probe sees a host file the guest does share (/usr).
        r = vm("sh", "-c", f"test -e /usr/bin/sh && echo usr-seen; cat {canary} || echo canary-absent")
    finally:
        os.unlink(canary)
    assert r.stdout.split() == ["usr-seen", "canary-absent"], (r.stdout, r.stderr)
    assert "host secret" not in r.stdout + r.stderr


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
    assert not left_behind(before)


def test_timeout_kills_the_vm():
    t0 = time.monotonic()
    r = vm("sleep", "60", opts=("--timeout", "3s"))
    assert r.returncode == 124, r.stderr
    assert time.monotonic() - t0 < 20
    assert "timeout" in r.stderr


def test_guest_panic_is_reported_and_cleaned_up():
    # The command cannot crash its guest any more (E-17: /proc/sysrq-trigger
    # is read-only in the sandbox): a guest without an init panics instead.
    r = vm("true", env=dict(VM_ENV, AEGIS_VM_KERNEL_ARGS="rdinit=/nonexistent"))
    assert r.returncode == 125
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "guest panic" in lines[0], r.stderr


def test_killed_qemu_is_reported_and_cleaned_up():
    before = run_dirs()
    p = subprocess.Popen([AEGIS, "run", "--backend", "vm", "--", "sh", "-c", "echo up; exec sleep 60"],
                         env=VM_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "up\n"
    pids = qemus_of(dirs_of(p.pid, before))
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 125
    assert err.strip().splitlines() == [err.strip()] and "killed by signal 9" in err, err
    assert not left_behind(before)


def test_hung_guest_is_killed_and_reported():
    # No guest greets within 200 ms: the same path as a guest hung in boot
    # (a cold one: a restored guest has greeted before its snapshot).
    r = vm("true", env=dict(VM_ENV, AEGIS_VM_HELLO_TIMEOUT="200ms", AEGIS_VM_SNAPSHOT="0"))
    assert r.returncode == 125
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "guest hung" in r.stderr, r.stderr
    # QEMU's own view, asked over QMP: the machine runs, the guest is silent.
    assert "QEMU status running" in r.stderr, r.stderr


def test_cgroup_parent_is_where_qemus_own_cgroup_goes():
    """--cgroup-parent (a delegated tree, rootless): QEMU itself runs in a
    cgroup below it, bounded as a whole (the guest's RAM + QEMU's own), and
    the cgroup is gone after the run. Without the flag QEMU is not put there."""
    parent = f"/aegis-test-vm-{os.getpid()}"
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    mem_root = "/sys/fs/cgroup" if v2 else "/sys/fs/cgroup/memory"
    before = run_dirs()
    p = subprocess.Popen([AEGIS, "run", "--backend", "vm", "--cgroup-parent", parent, "--memory", "128m", "--",
                          "sh", "-c", "echo up; sleep 8"], env=VM_ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "up\n"
        qemu = [q for q in qemus_of(run_dirs() - before) if parent_of(q) == p.pid]
        assert len(qemu) == 1, qemu
        with open(f"/proc/{qemu[0]}/cgroup") as f:
            lines = f.read().splitlines()
        rel = [l.split(":", 2)[2] for l in lines if (l.startswith("0::") if v2 else ":memory:" in l)]
        assert len(rel) == 1 and rel[0].startswith(parent + "/"), lines
        limit_file = "memory.max" if v2 else "memory.limit_in_bytes"
        with open(f"{mem_root}{rel[0]}/{limit_file}") as f:
            limit = int(f.read())
        assert limit >= (128 << 20) + (1 << 30), limit  # the guest's RAM and QEMU's overhead, not 128 MiB
    finally:
        assert p.wait(timeout=180) == 0
    assert not os.path.exists(f"{mem_root}{rel[0]}")
    assert not left_behind(before)
    # the same run without the flag: QEMU is not below that parent
    before = run_dirs()
    p = subprocess.Popen([AEGIS, "run", "--backend", "vm", "--", "sh", "-c", "echo up; sleep 3"], env=VM_ENV,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "up\n"
        qemu = [q for q in qemus_of(run_dirs() - before) if parent_of(q) == p.pid]
        with open(f"/proc/{qemu[0]}/cgroup") as f:
            assert parent not in f.read()
    finally:
        assert p.wait(timeout=180) == 0
    for d in (glob.glob(f"/sys/fs/cgroup/*{parent}") + glob.glob(f"/sys/fs/cgroup{parent}")):
        os.rmdir(d)


def test_net_host_is_refused_in_one_line():
    before = run_dirs()
    r = aegis("run", "--backend", "vm", "--net", "host", "--", "true", env=VM_ENV)
    assert r.returncode == 125
    line = r.stderr.strip()
    assert "\n" not in line and "--net host" in line and "never shares the host's network" in line, r.stderr
    assert not left_behind(before)


def test_doctor_reports_the_vm_backend(guest_files):
    r = aegis("doctor", "--json", env=VM_ENV)
    v = json.loads(r.stdout)["vm"]
    assert v["qemu"].endswith("qemu-system-x86_64")
    assert v["guest_kernel"] == guest_files
    assert v["accel"].startswith("tcg")
    # which guest is installed: the kernel and the image whose PID 1 is aegis-guest
    g = v["guest"]
    assert os.path.isfile(g["vmlinux"]) and os.path.isfile(g["image"]), g
    assert g["image_kib"] == (os.stat(g["image"]).st_size + 1023) // 1024 > 0, g
    text = aegis("doctor", env=VM_ENV).stdout
    assert f"guest image {g['image']} ({g['image_kib']} KiB" in text, text


def test_doctor_kvm_verdict_is_what_a_kvm_run_does(guest_files):
    """doctor boots a trial guest under KVM (bounded, a few seconds at
    most) and its verdict is what `AEGIS_VM_ACCEL=kvm aegis run --backend
    vm` then does on this host: usable and the run works, or unusable with
    QEMU's reason and the run fails (125) with that reason (this machine's
    nested /dev/kvm answers but QEMU aborts: "failed to set MSR 0x10a");
    no /dev/kvm, no trial, and the run fails naming it."""
    env = {k: v for k, v in os.environ.items() if k != "AEGIS_VM_ACCEL"}  # auto
    start = time.monotonic()
    v = json.loads(aegis("doctor", "--json", env=env).stdout)["vm"]
    text = aegis("doctor", env=env).stdout
    assert time.monotonic() - start < 8, "doctor (twice) is not fast"
    r = aegis("run", "--backend", "vm", "--", "true", env=dict(env, AEGIS_VM_ACCEL="kvm"), timeout=300)
    if v["kvm_trial"] == "usable":
        assert r.returncode == 0, r.stderr
        assert v["accel"] == "kvm" and "advice" not in v, v
        assert "KVM: usable (a trial guest's kernel ran under KVM within" in text, text
        assert "runs use KVM (AEGIS_VM_ACCEL=auto)" in text, text
    elif v["kvm"]:
        assert v["kvm_trial"] == "unusable", v
        reason = v["kvm_trial_detail"].split(" (QEMU ")[0]
        assert r.returncode == 125 and reason in r.stderr, (v, r.stderr)
        assert f"KVM: unusable: {v['kvm_trial_detail']}\n" in text, text
        # auto still picks KVM (it never falls back by itself): doctor says what to set
        assert v["accel"] == "kvm" and "AEGIS_VM_ACCEL=tcg" in v["advice"], v
        assert "runs use KVM (AEGIS_VM_ACCEL=auto)\n" in text and v["advice"] in text, text
    else:
        assert v["kvm_trial"] is None and "KVM:" not in text, (v, text)
        assert r.returncode == 125 and v["kvm_problem"] in r.stderr, (v, r.stderr)
    assert not run(["pgrep", "-f", "earlyprintk=ttyS0 panic=-1 rdinit=/nonexistent"]).stdout, "a trial QEMU outlived doctor"


def test_command_is_confined_inside_the_guest():
    # The ns backend's steps, inside the VM too: no capabilities,
    # no_new_privs, the seccomp allowlist (two filters); root cannot mount.
    r = vm("sh", "-c", "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; "
           "mount -t tmpfs none /mnt && echo mounted || echo mount-refused")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:4] == ["CapEff:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2",
                                        "mount-refused"], r.stdout


def test_qemu_gets_a_fixed_device_set_no_network_and_its_own_seccomp(tmp_path):
    # The same devices on every boot, used or not (a snapshot restores into
    # the same machine); -nodefaults and no -netdev: no network device.
    before = run_dirs()
    p = subprocess.Popen([AEGIS, "run", "--backend", "vm", "--", "sh", "-c", "echo up; exec sleep 60"],
                         env=VM_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "up\n"
        (pid,) = qemus_of(dirs_of(p.pid, before))
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode().split("\0")
    finally:
        p.kill()
        p.wait()
    tags = sorted(a.split("mount_tag=")[1] for a in argv if "mount_tag=" in a)
    assert tags == ["art", "etc", "io", "usr", "ws"], argv
    # one virtio-blk slot (an image root's EROFS, here the placeholder),
    # read-only, of a fixed size
    assert argv.count("virtio-blk-device,drive=slot") == 1, argv
    blockdevs = [a for a in argv if a.startswith("driver=")]
    assert len(blockdevs) == 2 and all("read-only=on" in a for a in blockdevs), blockdevs
    assert any(f"size={64 << 30}" in a for a in blockdevs), blockdevs
    ports = sorted(a.split("name=")[1] for a in argv if a.startswith("virtserialport,"))
    # the network and control ports too, for a run that uses neither (a one-shot run has no execs)
    assert ports == ["aegis", "aegis-ctl", "aegis-net"], argv
    assert not any(a in ("-netdev", "-nic", "-net") for a in argv), argv
    assert "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny" in argv
    fsdevs = [a for a in argv if a.startswith("local,")]
    assert all("security_model=none" in a and "multidevs=remap" in a for a in fsdevs), fsdevs
    assert any("path=/usr," in a and "readonly=on" in a for a in fsdevs), fsdevs
    # Never the host's /, /root, /home, /tmp itself, /var or /etc as a whole.
    paths = [a.split("path=")[1].split(",")[0] for a in fsdevs]
    assert not set(paths) & {"/", "/root", "/home", "/tmp", "/var", "/etc"}, paths


def test_audit_log_names_backend_accel_and_guest_kernel(tmp_path, guest_files):
    log = str(tmp_path / "audit.jsonl")
    r = vm("sh", "-c", "exit 4", opts=("--audit", log, "--env", "TOKEN=s3cret"))
    assert r.returncode == 4, r.stderr
    # A failed VM is audited too, as an error with its reason.
    p = vm("true", opts=("--audit", log), env=dict(VM_ENV, AEGIS_VM_KERNEL_ARGS="rdinit=/nonexistent"))
    assert p.returncode == 125
    with open(log) as f:
        text = f.read()
    events = [json.loads(line) for line in text.splitlines()]
    runs = [e for e in events if e["type"] in ("run.start", "run.end")]
    assert [e["type"] for e in runs] == ["run.start", "run.end", "run.start", "run.end"]
    # the engine in the guest recorded the exec it watched
    assert [e["argv"] for e in events if e["type"] == "exec"] == [["sh", "-c", "exit 4"]]
    start, end = runs[0], runs[1]
    assert start["backend"] == "vm" and start["accel"] == "tcg" and start["guest_kernel"] == guest_files
    assert "not a security boundary" in start["isolation"]
    assert "TOKEN" in start["env"] and "s3cret" not in text
    assert end["exit_code"] == 4 and end["end"] == "exited" and end["boot_ms"] > 0
    assert runs[3]["end"] == "error" and "guest panic" in runs[3]["error"]
    assert aegis("audit", "verify", log).returncode == 0


def test_aegis_killed_outright_takes_qemu_along():
    before = run_dirs()
    p = subprocess.Popen([AEGIS, "run", "--backend", "vm", "--", "sh", "-c", "echo up; exec sleep 60"],
                         env=VM_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "up\n"
    dirs = dirs_of(p.pid, before)
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
    """^Z stops the whole VM (QMP stop: its vCPUs and its clock) and aegis
    with it; fg (SIGCONT) runs it on (QMP cont) and sets the guest's wall
    clock to the host's, which stood still for as long as it was stopped."""
    pause_s = 3
    before = run_dirs()
    p = subprocess.Popen([AEGIS, "run", "--backend", "vm", "--", "sh", "-c",
                          "date +%s.%N; read line; echo got-$line; date +%s.%N"],
                         env=VM_ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        t0 = time.time()
        first = float(p.stdout.readline())
        # the measure itself: the guest's clock is the host's before the pause
        assert t0 - 1 < first < time.time() + 1, (first, t0)
        (run_dir,) = dirs_of(p.pid, before)
        assert qmp_status(run_dir) == "running"
        p.send_signal(signal.SIGTSTP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(f"/proc/{p.pid}/stat") as f:
                if f.read().split(")")[1].split()[0] == "T":
                    break
            time.sleep(0.02)
        assert qmp_status(run_dir) == "paused"
        time.sleep(pause_s)  # the guest's clock stands meanwhile
        p.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 5
        while qmp_status(run_dir) != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert qmp_status(run_dir) == "running"
        sent = time.time()
        out, err = p.communicate("x\n", timeout=30)
        done = time.time()
    finally:
        if p.poll() is None:  # a failed check must not leave a stopped aegis and its VM
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    got, after = out.splitlines()
    assert got == "got-x"
    # the guest's date was taken after the input was sent
    assert sent - 1 < float(after) < done + 1, \
        f"the guest's clock is {float(after) - sent:+.2f} s off the host's after a {pause_s} s pause"
    assert not left_behind(before)


# --------------------------------------------------------------------------
# The engine in the guest: the same spec, the same rules as the ns backend
# --------------------------------------------------------------------------

def test_workspace_rw_file_appears_on_host_with_the_owner_of_the_directory(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "in.txt").write_text("from-host\n")
    os.chown(ws, 4321, 4321)  # files made inside belong to the workspace's owner, as with the ns backend
    r = vm("sh", "-c", "cat in.txt; echo from-guest > out.txt", opts=("--workspace", str(ws)))
    assert r.returncode == 0 and r.stdout == "from-host\n", r.stderr
    assert (ws / "out.txt").read_text() == "from-guest\n"
    st = os.stat(ws / "out.txt")
    assert (st.st_uid, st.st_gid) == (4321, 4321)


def test_workspace_ro_write_fails(tmp_path):
    (tmp_path / "in.txt").write_text("x\n")
    r = vm("sh", "-c", "cat in.txt && echo y > in.txt", opts=("--workspace-ro", str(tmp_path)))
    assert r.returncode != 0 and r.stdout == "x\n"
    assert "Read-only file system" in r.stderr or "Permission denied" in r.stderr, r.stderr
    assert (tmp_path / "in.txt").read_text() == "x\n"


def test_overlay_leaves_the_host_unchanged_and_the_changes_in_artifacts(tmp_path):
    """Also what needs the overlay's whiteouts and opaque marks (a directory
    with entries removed, a file made a directory), which the guest's 6.1
    tmpfs holds only as trusted.* xattrs: the guest's root builds it."""
    ws, arts = tmp_path / "ws", tmp_path / "arts"
    (ws / "sub").mkdir(parents=True)
    (ws / "sub" / "x").write_text("x\n")
    (ws / "f").write_text("f\n")
    (ws / "a.txt").write_text("before\n")
    r = vm("sh", "-c", "echo after > a.txt; echo new > b.txt; cat a.txt; rm -r sub && rm f && mkdir f && echo ok",
           opts=("--workspace", str(ws), "--workspace-mode", "overlay", "--artifacts", str(arts)))
    assert r.returncode == 0 and r.stdout == "after\nok\n", r.stderr
    assert (ws / "a.txt").read_text() == "before\n" and not (ws / "b.txt").exists()
    assert (ws / "sub" / "x").read_text() == "x\n" and (ws / "f").read_text() == "f\n"
    changes = json.load(open(arts / "changes.json"))
    assert changes["workspace"] == str(ws)  # the host's path, not the guest's mount
    assert sorted((c["path"], c["kind"]) for c in changes["changes"]) == [
        ("a.txt", "modified"), ("b.txt", "added"), ("f", "replaced"), ("sub", "deleted")]
    res = json.load(open(arts / "result.json"))
    assert res["backend"] == "vm" and res["accel"] == "tcg" and res["boot_ms"] > 0
    assert (arts / "stdout").read_text() == "after\nok\n"
    assert aegis("apply", str(arts)).returncode == 0
    assert (ws / "a.txt").read_text() == "after\n" and (ws / "b.txt").read_text() == "new\n"
    assert not (ws / "sub").exists() and (ws / "f").is_dir() and not os.listdir(ws / "f")


def test_policy_denies_a_command_and_an_argv_prefix_in_the_guest(tmp_path):
    pol = tmp_path / "p.json"
    pol.write_text(json.dumps({"commands": {"deny": ["/usr/bin/od"], "argv_deny": ["ls -la"]}}))
    cmd = "od -An -c /dev/null && echo od-ran; ls -la / >/dev/null && echo ls-la-ran; ls / >/dev/null && echo ls-ran"
    # without the policy every one runs: the probe works
    r = vm("sh", "-c", cmd)
    assert r.stdout.split() == ["od-ran", "ls-la-ran", "ls-ran"], r.stderr
    log = tmp_path / "audit.jsonl"
    r = vm("sh", "-c", cmd, opts=("--policy", str(pol), "--audit", str(log)))
    assert r.stdout.split() == ["ls-ran"], (r.stdout, r.stderr)
    denied = [e for e in map(json.loads, open(log)) if e["type"] == "exec" and e["verdict"] == "deny"]
    assert denied and {e["rule"] for e in denied} == {"commands.argv_deny: ls -la"}, denied
    assert aegis("audit", "verify", str(log)).returncode == 0


def test_landlock_files_deny_in_the_guest(tmp_path):
    pol = tmp_path / "p.json"
    pol.write_text(json.dumps({"files": {"deny": ["/etc/os-release"]}}))
    assert vm("cat", "/etc/os-release").returncode == 0  # the probe reads it without the rule
    r = vm("cat", "/etc/os-release", opts=("--policy", str(pol)))
    assert r.returncode == 1 and "Permission denied" in r.stderr and r.stdout == "", r


@pytest.mark.parametrize("opts,cmd,status,limit", [
    (("--memory", "64m"), "head -c 200m /dev/zero | tail", 137, "oom"),
    (("--pids", "8"), "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done; wait", 137, "pids"),
    (("--timeout", "2s"), "sleep 30", 124, "timeout"),
    (("--output", "1k"), "head -c 5000 /dev/zero | tr '\\\\0' a", 0, "output_truncated"),
    (("--disk", "1m"), "head -c 5m /dev/zero > /tmp/big", (1, 137), "disk_full"),
])
def test_limits_hold_in_the_guest(opts, cmd, status, limit):
    # disk_full: the write fails (ENOSPC), and the engine may stop the
    # sandbox before the shell exits, as on the host
    statuses = status if isinstance(status, tuple) else (status,)
    r = vm("sh", "-c", cmd, opts=("--json", *opts))
    res = json.loads(r.stdout)
    assert r.returncode in statuses and res["exit_code"] == r.returncode and res["limit"] == limit, \
        (r.stdout, r.stderr)
    assert res["backend"] == "vm" and res["cgroup"] == "v2"
    if limit == "output_truncated":
        assert len(res["stdout"]) == 1024 and res["stdout_truncated"] is True


def test_secrets_env_and_file_reach_the_command_and_no_record(tmp_path):
    canary = "vm-canary-5e1b-not-for-logs"
    state = tmp_path / "state"
    env = dict(VM_ENV, AEGIS_STATE_DIR=str(state))
    assert aegis("secret", "set", "TOKEN", input=canary + "\n", env=env).returncode == 0
    assert aegis("secret", "set", "KEYFILE", input=canary + "\n", env=env).returncode == 0
    log, arts = tmp_path / "audit.jsonl", tmp_path / "arts"
    r = vm("sh", "-c", 'echo "$TOKEN"; cat /run/secrets/KEYFILE; echo; printf %s "$TOKEN" | wc -c',
           opts=("--secret", "TOKEN", "--secret", "KEYFILE:file", "--audit", str(log), "--artifacts", str(arts),
                 "--json"), env=env)
    res = json.loads(r.stdout)
    assert r.returncode == 0, r.stderr
    lines = res["stdout"].splitlines()
    assert lines[2].strip() == str(len(canary)), lines  # the value was there
    assert all(line.startswith("[secret:") for line in lines[:2]), lines  # and redacted from the output
    assert canary not in r.stdout + r.stderr  # and redacted from the output
    events = [json.loads(line) for line in open(log)]
    assert [e["names"] for e in events if e["type"] == "secret.use"] == [["TOKEN", "KEYFILE"]]
    for root, _, files in os.walk(tmp_path):
        for f in files:
            if os.path.islink(os.path.join(root, f)):
                continue  # links of the /etc copy point into the host's /usr
            assert canary.encode() not in file_data(os.path.join(root, f)), os.path.join(root, f)


# The guest kernel has CONFIG_MAGIC_SYSRQ; a host kernel without it has no
# /proc/sysrq-trigger for the native baseline: another E-17 kernel knob
# (opened for writing only, never written) stands in there, as in test_hostile.
E17 = ["/proc/sys/kernel/core_pattern",
       "/proc/sysrq-trigger" if os.path.exists("/proc/sysrq-trigger") else "/proc/sys/vm/drop_caches"]


@pytest.mark.parametrize("path", E17)
def test_e17_kernel_knobs_fail_in_the_guest_as_in_the_ns_backend(path):
    """HOSTILE.md E-17: the probe opens a kernel control file for writing (never
    writes); it works on the host, and fails in the sandbox, in a guest too."""
    base = probe_outside("write-file", path)
    assert base.returncode == 0 and "ok" in base.stdout, base.stdout + base.stderr
    for backend in ("ns", "vm"):
        r = aegis("run", "--backend", backend, "--workspace-ro", os.path.dirname(PROBE), "--",
                  "/workspace/" + os.path.basename(PROBE), "write-file", path,
                  env=VM_ENV, timeout=180)
        assert r.returncode == 1 and ("EROFS" in r.stdout or "EACCES" in r.stdout), (backend, r.stdout, r.stderr)
    # and the guest's sysrq-trigger, which the guest kernel has whatever the host's
    r = aegis("run", "--backend", "vm", "--workspace-ro", os.path.dirname(PROBE), "--",
              "/workspace/" + os.path.basename(PROBE), "write-file", "/proc/sysrq-trigger", env=VM_ENV, timeout=180)
    assert r.returncode == 1 and "EROFS" in r.stdout, (r.stdout, r.stderr)


def test_a_missing_command_is_127_as_in_the_ns_backend():
    for backend in ("ns", "vm"):
        r = aegis("run", "--backend", backend, "--", "/no/such/command", env=VM_ENV, timeout=180)
        assert r.returncode == 127, (backend, r.stderr)


def test_an_image_root_in_the_guest_as_on_the_host(tmp_path):
    """The image's merged root reaches the guest as an EROFS block image;
    the engine in the guest builds the same overlay root (whiteouts,
    opaque directories, the
    image's Env and WorkingDir), and writes stay in the run: also those
    that mark whiteouts and opaque directories in the run's layer (a
    directory of the image removed and made again, a file of it replaced
    by a directory), which the guest's 6.1 tmpfs holds only as trusted.*
    xattrs."""
    import ocilayout
    base_extra = [("gone.txt", "file", b"in the base\n"), ("base.txt", "file", b"base\n"), ("opq/", "dir"),
                  ("opq/old", "file", b"old\n")]
    top = [("top.txt", "file", b"top\n"), (".wh.gone.txt", "file", b""), ("opq/", "dir"),
           ("opq/.wh..wh..opq", "file", b""), ("opq/new", "file", b"new\n")]
    ocilayout.build(str(tmp_path / "img"), [ocilayout.base_entries() + base_extra, top],
                    env=["PATH=/usr/bin:/bin", "IMGVAR=fromimage"], workdir="/srv/app")
    env = dict(VM_ENV, AEGIS_STATE_DIR=str(tmp_path / "state"))
    p = aegis("image", "import", "--quiet", "--name", "test/img:1", str(tmp_path / "img"), env=env)
    assert p.returncode == 0, p
    cmd = ('echo "$(pwd) $IMGVAR"; cat /top.txt /base.txt; ls /opq; test -e /gone.txt || echo gone-absent; '
           'echo w > /base.txt && cat /base.txt; rm -r /opq && mkdir /opq && ls -A /opq && echo remade; '
           'rm /top.txt && mkdir /top.txt && test -d /top.txt && echo dir')
    outs = {}
    for backend in ("ns", "vm"):
        r = aegis("run", "--backend", backend, "--image", "test/img:1", "--", "sh", "-c", cmd, env=env, timeout=180)
        assert r.returncode == 0, (backend, r.stderr)
        outs[backend] = r.stdout
    assert outs["vm"] == outs["ns"] == "/srv/app fromimage\ntop\nbase\nnew\ngone-absent\nw\nremade\ndir\n", outs
    layers = tmp_path / "state" / "images" / "layers"
    assert all("w\n" != open(os.path.join(root, f), "rb").read().decode(errors="replace")
               for root, _, files in os.walk(layers) for f in files
               if f == "base.txt" and not os.path.islink(os.path.join(root, f)))


def slot_file_of(p, before):
    """The file QEMU's block slot reads, as the run's aegis holds it."""
    (pid,) = qemus_of(dirs_of(p.pid, before))
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().decode().split("\0")
    (dev,) = [a for a in argv if a.startswith("driver=file,")]
    return os.readlink(dev.split("filename=")[1].split(",")[0])


def test_an_image_root_is_an_erofs_block_image_built_once(tmp_path):
    """An image run's root is an EROFS image of the image on the guest's
    block slot (the guest mounts erofs, /dev/vda, no 9p share of the
    layers), built once per image into the state dir: a second run reuses
    the very file, a damaged one (cut short, overwritten) is rebuilt and
    never used, a cold boot takes it too, and a run without an image
    after it gets the empty placeholder and still works."""
    import ocilayout
    ocilayout.build(str(tmp_path / "img"), [ocilayout.base_entries() + [("f.txt", "file", b"from the image\n")]],
                    env=["PATH=/usr/bin:/bin"])
    env = dict(VM_ENV, AEGIS_STATE_DIR=str(tmp_path / "state"))
    assert aegis("image", "import", "--quiet", "--name", "test/e:1", str(tmp_path / "img"), env=env).returncode == 0
    cache = tmp_path / "state" / "vm-erofs"

    def image_run(extra_env=None):
        r = vm("cat", "/f.txt", opts=("--json", "--image", "test/e:1"), env=dict(env, **(extra_env or {})))
        assert r.returncode == 0, r.stderr
        j = json.loads(r.stdout)
        assert j["stdout"] == "from the image\n" and j["image_root"] == "erofs", j
        (img,) = [cache / f for f in os.listdir(cache) if f.endswith(".erofs")]
        return j, img

    j, img = image_run()
    assert j["image_build_ms"] > 0, j
    st = os.stat(img)
    # the slot's size, sparse; the EROFS superblock's magic at 1024
    assert st.st_size == 64 << 30 and st.st_blocks * 512 < 256 << 20, st
    with open(img, "rb") as f:
        f.seek(1024)
        assert f.read(4) == bytes.fromhex("e2e1f5e0")
    j, img2 = image_run()
    st2 = os.stat(img2)
    assert "image_build_ms" not in j and img2 == img, j
    assert (st2.st_ino, st2.st_mtime_ns, st2.st_ctime_ns) == (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)

    # while it runs: the slot is the cached file, which the guest has as
    # vda of the slot's size (its erofs mount is the guest's, not the
    # sandbox's: the run fails when it cannot mount it)
    before = run_dirs()
    p = subprocess.Popen([AEGIS, "run", "--backend", "vm", "--image", "test/e:1", "--", "sh", "-c",
                          "cat /proc/partitions; echo up; exec sleep 60"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        parts = []
        while (line := p.stdout.readline()) not in ("up\n", ""):
            parts.append(line.split())
        assert ["254", "0", str(64 << 20), "vda"] in parts, parts
        assert slot_file_of(p, before) == str(img)
    finally:
        p.kill()
        p.wait()

    # damaged: cut short, then overwritten in place: rebuilt, not used
    os.truncate(img, 4096)
    j, img3 = image_run()
    assert j["image_build_ms"] > 0 and os.stat(img3).st_size == 64 << 30, j
    with open(img3, "r+b") as f:
        f.seek(1024)
        f.write(b"garbage!" * 512)
    j, img4 = image_run()
    assert j["image_build_ms"] > 0, j
    with open(img4, "rb") as f:
        f.seek(1024)
        assert f.read(4) == bytes.fromhex("e2e1f5e0")
    assert not [f for f in os.listdir(cache) if f.startswith(".")], os.listdir(cache)

    # a cold boot mounts it as well
    j, _ = image_run({"AEGIS_VM_SNAPSHOT": "0"})
    assert j["start"] == "cold" and "image_build_ms" not in j, j

    # no image: the placeholder, and the host's root as before
    r = vm("sh", "-c", "test -e /f.txt || echo host-root", opts=("--json",), env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["stdout"] == "host-root\n", r
    assert "image_root" not in json.loads(r.stdout)
    slot = os.stat(cache / "slot")
    assert slot.st_size == 64 << 30 and slot.st_blocks == 0, slot


def test_image_rm_takes_its_erofs_root_along(tmp_path):
    """`aegis image rm` drops the EROFS roots built for the image it
    removes (their layers gone with it), and only those: another image's
    stays, and a run of it still takes the cached one."""
    import ocilayout
    env = dict(VM_ENV, AEGIS_STATE_DIR=str(tmp_path / "state"))
    for n in ("1", "2"):
        ocilayout.build(str(tmp_path / n), [ocilayout.base_entries() + [("n.txt", "file", n.encode())]],
                        env=["PATH=/usr/bin:/bin"])
        assert aegis("image", "import", "--quiet", "--name", f"test/g:{n}", str(tmp_path / n),
                     env=env).returncode == 0
    cache = tmp_path / "state" / "vm-erofs"
    built = {}
    for n in ("1", "2"):
        before = set(os.listdir(cache)) if cache.exists() else set()
        r = vm("cat", "/n.txt", opts=("--image", f"test/g:{n}"), env=env)
        assert r.returncode == 0 and r.stdout == n, r
        built[n] = sorted(set(os.listdir(cache)) - before - {"lock", "slot"})
    key = built["1"][0].split(".")[0]
    assert built["1"] == [f"{key}.erofs", f"{key}.erofs.id", f"{key}.layers"], built
    r = aegis("image", "rm", "--json", "test/g:1", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["vm_roots_removed"] == 1, r
    left = set(os.listdir(cache))
    assert not left & set(built["1"]) and set(built["2"]) <= left, (left, built)
    st = os.stat(cache / built["2"][0])
    r = vm("cat", "/n.txt", opts=("--json", "--image", "test/g:2"), env=env)
    assert r.returncode == 0 and "image_build_ms" not in json.loads(r.stdout), r
    assert os.stat(cache / built["2"][0]).st_ino == st.st_ino
    r = aegis("image", "prune", "--json", env=env)  # test/g:2 is unused: pruned, its root too
    assert r.returncode == 0 and json.loads(r.stdout)["vm_roots_removed"] == 1, r
    assert not [f for f in os.listdir(cache) if f.endswith(".erofs")]


def test_etc_copy_follows_the_host(tmp_path):
    """The guest's /etc allowlist is a copy kept between runs: a change on
    the host (a file added, changed, removed in /etc/ssl) shows at the next
    run, never the stale copy."""
    env = dict(VM_ENV, AEGIS_STATE_DIR=str(tmp_path / "state"))
    probe = f"/etc/ssl/aegis-test-{os.getpid()}"
    try:
        with open(probe, "w") as f:
            f.write("one\n")
        r = vm("cat", probe, env=env)
        assert r.returncode == 0 and r.stdout == "one\n", r
        with open(probe, "w") as f:  # the same inode, changed in place
            f.write("two\n")
        r = vm("cat", probe, env=env)
        assert r.returncode == 0 and r.stdout == "two\n", r
    finally:
        os.unlink(probe)
    r = vm("cat", probe, env=env)
    assert r.returncode == 1 and "No such file" in r.stderr, r
    copies = os.listdir(tmp_path / "state" / "vm-etc")
    assert len([c for c in copies if not c.startswith(".")]) == 3 and not [c for c in copies if c.startswith(".")]
