"""Fast start of the vm backend: snapshot once, restore per run (docs/vm.md).

The first run with a given guest, QEMU and size builds a snapshot (a guest
that has greeted and waits for its request) under the state directory; the
runs after it restore copy-on-write clones of it. These tests check that
restored runs behave as cold ones, that a snapshot is built once however
many runs start together, that a damaged or stale one is never used, that
clones never write the template, and that clones differ in their RNG and
know the time. Each test uses a state directory of its own (or the module's
shared one) so nothing depends on what other runs left.
"""
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time

import pytest

from conftest import AEGIS, aegis
from test_vm import guest_files  # noqa: F401 (the autouse fixture: vm-guest.sh for this build)

BUILD = os.path.dirname(AEGIS)
ACCEL = os.environ.get("AEGIS_TEST_VM_ACCEL", "tcg")




@pytest.fixture(scope="module")
def shared_state(tmp_path_factory):
    """A state directory whose snapshot the first run through it builds."""
    return str(tmp_path_factory.mktemp("vmsnap") / "state")


def env_for(state, **extra):
    return dict(os.environ, AEGIS_VM_ACCEL=ACCEL, AEGIS_STATE_DIR=state, **extra)


def run_dirs():
    return set(glob.glob("/tmp/aegis-vm-*"))


def left_behind(before):
    """Run directories made since `before` that no live run holds: ours,
    left by a run that has ended (other runs on the host hold their lock)."""
    left = []
    for d in run_dirs() - before:
        try:
            fd = os.open(os.path.join(d, "lock"), os.O_RDWR)
        except OSError:
            continue  # gone, or being born
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            left.append(d)
        except OSError:
            pass
        finally:
            os.close(fd)
    return left


def vm(state, *argv, opts=(), env=None, **kw):
    """`aegis run --backend vm OPTS -- ARGV` with state; nothing may be left."""
    before = run_dirs()
    r = aegis("run", "--backend", "vm", *opts, "--", *argv, env=env or env_for(state), timeout=180, **kw)
    assert not left_behind(before), "run directories left behind"
    return r


def vm_json(state, *argv, opts=(), env=None, **kw):
    r = vm(state, *argv, opts=("--json",) + tuple(opts), env=env, **kw)
    try:
        return r, json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"no JSON result: {r.stdout!r} {r.stderr!r}")


def snapshots(state):
    return sorted(glob.glob(os.path.join(state, "vm-snapshots", "*-*m-*cpu-*")))


# The guest's RAM is the run's memory limit (default 1g) + 256 MiB for the
# guest itself (src/vm/backend.c), and a snapshot is per RAM size.
DEFAULT_SIZE = "-1280m-1cpu-"


def ready(state):
    """The state's snapshot for the default size, built if there is none yet."""
    default = lambda: [s for s in snapshots(state) if DEFAULT_SIZE in s]
    if not default():
        r, res = vm_json(state, "true")
        assert r.returncode == 0 and res["start"] == "restore", (r.stdout, r.stderr)
    (snap,) = default()
    return snap


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def test_first_run_builds_later_runs_restore(tmp_path):
    state = str(tmp_path / "state")
    r, first = vm_json(state, "sh", "-c", "echo one")
    assert r.returncode == 0 and first["stdout"] == "one\n", r.stderr
    assert first["start"] == "restore" and first["snapshot_build_ms"] > 0
    r, second = vm_json(state, "sh", "-c", "echo two")
    assert r.returncode == 0 and second["stdout"] == "two\n", r.stderr
    assert second["start"] == "restore" and "snapshot_build_ms" not in second
    # boot_ms is QEMU start to a guest ready for its request, here the restore;
    # wall_ms is the command's own, as the engine in the guest measured it.
    assert 0 < second["restore_ms"] == second["boot_ms"]
    # guest_setup_ms is the guest's own count from the request to its engine
    # started (clock, seed, shares), told in STARTED.
    assert 0 < second["guest_setup_ms"] < 30000, second
    # Private: 0700 directories, 0600 files, ours.
    (snap,) = snapshots(state)
    for d in (os.path.dirname(snap), snap):
        st = os.lstat(d)
        assert stat.S_ISDIR(st.st_mode) and st.st_mode & 0o777 == 0o700 and st.st_uid == os.geteuid()
    assert sorted(os.listdir(snap)) == ["meta", "ram", "state"]
    for name in os.listdir(snap):
        st = os.lstat(os.path.join(snap, name))
        assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o777 == 0o600


def test_restored_run_relays_status_output_stdin_env_cwd(shared_state):
    ready(shared_state)
    r = vm(shared_state, "sh", "-c", 'echo "$FOO $(pwd)"; cat; echo to-err >&2; exit 7',
           opts=("--env", "FOO=bar", "--cwd", "/tmp"), input="from-stdin\n")
    assert r.returncode == 7, r.stderr
    assert r.stdout == "bar /tmp\nfrom-stdin\n" and r.stderr == "to-err\n"


def test_restored_run_signals_and_timeout(shared_state):
    ready(shared_state)
    assert vm(shared_state, "sh", "-c", "kill -TERM $$").returncode == 128 + signal.SIGTERM
    t0 = time.monotonic()
    r = vm(shared_state, "sleep", "60", opts=("--timeout", "3s"))
    assert r.returncode == 124 and "timeout" in r.stderr
    assert time.monotonic() - t0 < 30
    before = run_dirs()
    p = subprocess.Popen([AEGIS, "run", "--backend", "vm", "--", "sh", "-c", "echo up; exec sleep 60"],
                         env=env_for(shared_state), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "up\n"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGINT, err
    assert not left_behind(before)


def test_concurrent_first_runs_build_once_and_all_restore(tmp_path):
    state = str(tmp_path / "state")
    procs = [subprocess.Popen([AEGIS, "run", "--backend", "vm", "--json", "--", "sh", "-c", f"echo run-{i}"],
                              env=env_for(state), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    results = []
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        res = json.loads(out)
        assert res["stdout"] == f"run-{i}\n" and res["start"] == "restore", res
        results.append(res)
    assert sum("snapshot_build_ms" in res for res in results) == 1
    assert len(snapshots(state)) == 1
    assert not [n for n in os.listdir(os.path.join(state, "vm-snapshots")) if n.startswith(".")]


def test_concurrent_restores_from_one_snapshot(shared_state):
    ready(shared_state)
    procs = [subprocess.Popen([AEGIS, "run", "--backend", "vm", "--json", "--", "sh", "-c",
                               f"echo clone-{i}; cat"], env=env_for(shared_state), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    for i, p in enumerate(procs):
        out, err = p.communicate(f"in-{i}\n", timeout=300)
        assert p.returncode == 0, err
        res = json.loads(out)
        assert res["start"] == "restore" and res["stdout"] == f"clone-{i}\nin-{i}\n", res


def test_killed_build_leaves_nothing_used(tmp_path):
    state = str(tmp_path / "state")
    root = os.path.join(state, "vm-snapshots")
    p = subprocess.Popen([AEGIS, "run", "--backend", "vm", "--", "true"], env=env_for(state),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not glob.glob(os.path.join(root, ".build-*", "ram")):
        time.sleep(0.01)
    p.kill()  # mid-build: QEMU dies with it (PDEATHSIG), the lock is released
    p.wait()
    assert glob.glob(os.path.join(root, ".build-*")) and not snapshots(state)
    r, res = vm_json(state, "echo", "ok")
    assert res["start"] == "restore" and res["snapshot_build_ms"] > 0 and res["stdout"] == "ok\n"
    assert [n for n in os.listdir(root) if n.startswith(".")] == []


def test_truncated_state_is_rebuilt_not_used(tmp_path):
    state = str(tmp_path / "state")
    snap = ready(state)
    path = os.path.join(snap, "state")
    size = os.path.getsize(path)
    os.truncate(path, size // 2)
    r, res = vm_json(state, "echo", "ok", env=env_for(state, AEGIS_DEBUG="1"))
    assert r.returncode == 0 and res["stdout"] == "ok\n"
    assert res["start"] == "restore" and res["snapshot_build_ms"] > 0, res
    assert "state file missing or damaged" in r.stderr, r.stderr
    assert os.path.getsize(os.path.join(snapshots(state)[0], "state")) > size // 2


def test_key_mismatch_is_rebuilt_not_used(tmp_path):
    state = str(tmp_path / "state")
    snap = ready(state)
    meta = os.path.join(snap, "meta")
    with open(meta) as f:
        text = f.read()
    with open(meta, "w") as f:
        f.write(re.sub(r"^key [0-9a-f]{64}", "key " + "0" * 64, text))
    r, res = vm_json(state, "echo", "ok", env=env_for(state, AEGIS_DEBUG="1"))
    assert r.returncode == 0 and res["stdout"] == "ok\n"
    assert res["snapshot_build_ms"] > 0 and "key mismatch" in r.stderr, r.stderr


def test_changed_guest_files_get_a_new_snapshot(tmp_path):
    # The key covers the guest files: a replaced initramfs is a new snapshot,
    # and the build removes the old one (it would never be used again).
    state, guest = str(tmp_path / "state"), str(tmp_path / "vm")
    shutil.copytree(os.path.join(BUILD, "vm"), guest)
    env = env_for(state, AEGIS_VM_DIR=guest)
    old = None
    for _ in range(2):
        r, res = vm_json(state, "true", env=env)
        assert r.returncode == 0 and res["start"] == "restore" and res["snapshot_build_ms"] > 0, res
        (snap,) = snapshots(state)
        assert snap != old
        old = snap
        os.utime(os.path.join(guest, "initramfs.cpio"), ns=(1, 1))


def test_stale_snapshot_that_fails_to_load_is_dropped_and_the_run_boots_cold(tmp_path):
    # A snapshot whose checks pass but which QEMU cannot load (what a QEMU
    # upgraded without a new inode, or a bug, would give): the run boots
    # cold and says why, the snapshot is gone, the next run builds anew.
    state = str(tmp_path / "state")
    snap = ready(state)
    path = os.path.join(snap, "state")
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        data[len(data) // 2:] = b"\xff" * (len(data) - len(data) // 2)
        f.seek(0)
        f.write(data)
    meta = os.path.join(snap, "meta")
    with open(meta) as f:
        text = f.read()
    with open(meta, "w") as f:
        f.write(re.sub(r"state [0-9a-f]{64}", "state " + hashlib.sha256(data).hexdigest(), text))
    r, res = vm_json(state, "echo", "ok", env=env_for(state, AEGIS_DEBUG="1"))
    assert r.returncode == 0 and res["stdout"] == "ok\n", r.stderr
    assert res["start"] == "cold" and "snapshot dropped: restore failed" in res["start_reason"], res
    assert "aegis: debug: vm: cold boot: snapshot dropped" in r.stderr
    assert not snapshots(state)
    r, res = vm_json(state, "echo", "again")
    assert res["start"] == "restore" and res["snapshot_build_ms"] > 0 and res["stdout"] == "again\n"


def test_killed_qemu_during_restore_is_reported(tmp_path):
    state = str(tmp_path / "state")
    ready(state)
    p = subprocess.Popen([AEGIS, "run", "--backend", "vm", "--", "sh", "-c", "sleep 60"],
                         env=env_for(state), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim, deadline = None, time.monotonic() + 60
    while victim is None and time.monotonic() < deadline and p.poll() is None:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if b"qemu-system" in cmd and b"-incoming" in cmd and state.encode() in cmd:
                victim = int(pid)
                os.kill(victim, signal.SIGKILL)
                break
    out, err = p.communicate(timeout=60)
    assert victim, "no restoring QEMU seen"
    assert p.returncode == 125, err
    assert err.strip().splitlines() == [err.strip()] and "killed by signal 9" in err, err
    # Not the snapshot's fault: it stays and serves the next run.
    assert len(snapshots(state)) == 1
    r, res = vm_json(state, "echo", "ok")
    assert res["start"] == "restore" and "snapshot_build_ms" not in res and res["stdout"] == "ok\n"


def test_clones_never_write_the_template_ram(shared_state):
    snap = ready(shared_state)
    ram = os.path.join(snap, "ram")
    before = sha256(ram)
    # 96 MiB of non-zero bytes into the guest's tmpfs (its RAM), twice.
    for _ in range(2):
        r = vm(shared_state, "sh", "-c", "yes abcdefgh | head -c 100663296 > /tmp/f; wc -c < /tmp/f; "
               "true")
        assert r.returncode == 0 and r.stdout.strip() == "100663296", (r.stdout, r.stderr)
    assert sha256(ram) == before


def test_other_sizes_have_their_own_snapshot(shared_state):
    ready(shared_state)
    r, res = vm_json(shared_state, "sh", "-c", "grep MemTotal /proc/meminfo", opts=("--memory", "512m"))
    assert r.returncode == 0 and res["start"] == "restore" and res["snapshot_build_ms"] > 0, res
    kib = int(res["stdout"].split()[1])
    assert 512 * 1024 < kib <= 768 * 1024  # 512m + the guest's own 256 MiB
    assert any("-768m-1cpu-" in s for s in snapshots(shared_state))
    assert any(DEFAULT_SIZE in s for s in snapshots(shared_state))


def test_snapshots_off_boots_cold(shared_state):
    r, res = vm_json(shared_state, "echo", "ok", env=env_for(shared_state, AEGIS_VM_SNAPSHOT="0"))
    assert r.returncode == 0 and res["start"] == "cold" and res["restore_ms"] is None
    assert res["start_reason"] == "AEGIS_VM_SNAPSHOT=0"


def test_snapshot_dir_open_to_others_or_not_ours_is_refused(tmp_path):
    state = str(tmp_path / "state")
    snap = ready(state)
    os.chmod(snap, 0o777)
    try:
        r, res = vm_json(state, "echo", "ok")
        assert r.returncode == 0 and res["stdout"] == "ok\n"
        assert res["start"] == "cold" and "refused" in res["start_reason"], res
        assert os.path.isdir(snap)  # refused, not touched
        os.chmod(snap, 0o700)
        if os.geteuid() == 0:  # someone else's (only root can give it away)
            os.chown(snap, 65534, -1)
            r, res = vm_json(state, "echo", "ok")
            assert res["start"] == "cold" and "refused" in res["start_reason"], res
            assert os.stat(snap).st_uid == 65534
            os.chown(snap, 0, -1)
        os.chmod(os.path.dirname(snap), 0o755)
        r, res = vm_json(state, "echo", "ok")
        assert res["start"] == "cold" and "open to others" in res["start_reason"], res
    finally:
        os.chmod(os.path.dirname(snap), 0o700)
        os.chmod(snap, 0o700)
        os.chown(snap, os.geteuid(), -1)


def test_audit_says_how_the_guest_started(shared_state, tmp_path):
    ready(shared_state)
    log = str(tmp_path / "audit.jsonl")
    assert vm(shared_state, "true", opts=("--audit", log)).returncode == 0
    with open(log) as f:
        events = [json.loads(line) for line in f]  # the engine's, exec events between
    start, end = events[0], events[-1]
    assert start["type"] == "run.start" and start["start"] == "restore" and start["restore_ms"] > 0
    assert end["type"] == "run.end" and end["start"] == "restore" and end["guest_setup_ms"] > 0


def test_clones_differ_in_rng(shared_state):
    # Every clone starts from the template's CRNG state; the request's seed
    # (RNDADDENTROPY, then RNDRESEEDCRNG) makes each one's bytes its own.
    # Several clones, several reads each: no two reads may be equal.
    ready(shared_state)
    script = "for i in 1 2 3; do head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; done"
    reads = []
    for _ in range(4):
        r = vm(shared_state, "sh", "-c", script)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.split()
        assert len(lines) == 3 and all(len(x) == 32 for x in lines), r.stdout
        reads += lines
    assert len(set(reads)) == len(reads), reads


def test_clone_clock_is_the_hosts(shared_state):
    ready(shared_state)
    time.sleep(8)  # the template's clock is now 8 s behind
    r = vm(shared_state, "date", "+%s")
    host = time.time()
    assert r.returncode == 0, r.stderr
    assert abs(int(r.stdout) - host) < 4, (r.stdout, host)


def test_one_snapshot_serves_every_workspace(shared_state, tmp_path):
    # The shares' host directories are not in the key: runs with other
    # workspaces, modes and artifacts directories restore the same
    # snapshot, and the restored guest mounts this run's directories.
    ready(shared_state)
    before = snapshots(shared_state)
    wss = []
    for i in range(2):
        ws = tmp_path / f"ws{i}"
        ws.mkdir()
        (ws / "f").write_text(f"ws-{i}\n")
        wss.append(ws)
    r, res = vm_json(shared_state, "sh", "-c", "cat f; echo made > g", opts=("--workspace", str(wss[0])))
    assert r.returncode == 0 and res["stdout"] == "ws-0\n" and res["start"] == "restore", res
    assert "snapshot_build_ms" not in res and (wss[0] / "g").read_text() == "made\n"
    r, res = vm_json(shared_state, "sh", "-c", "cat f; ls; echo x > h", opts=("--workspace-ro", str(wss[1])))
    assert res["start"] == "restore" and "snapshot_build_ms" not in res, res
    assert res["stdout"] == "ws-1\nf\n" and "Read-only file system" in res["stderr"], res
    art = tmp_path / "art"
    r, res = vm_json(shared_state, "sh", "-c", "cat f; echo y > h",
                     opts=("--workspace", str(wss[1]), "--workspace-mode", "overlay", "--artifacts", str(art)))
    assert r.returncode == 0 and res["stdout"] == "ws-1\n" and res["start"] == "restore", res
    assert not (wss[1] / "h").exists() and (art / "changes.json").exists()
    with open(art / "result.json") as f:
        assert json.load(f)["start"] == "restore"
    assert snapshots(shared_state) == before


def test_restored_guest_that_does_not_answer_is_hung(shared_state):
    # A restored guest greeted before its snapshot: the bound is on its
    # answer to the request (STARTED). 1 ms is less than any guest's setup
    # takes, so this is the path of a clone hung after the restore.
    ready(shared_state)
    r = vm(shared_state, "true", env=env_for(shared_state, AEGIS_VM_HELLO_TIMEOUT="1ms"))
    assert r.returncode == 125, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert "guest hung: no answer to the request from aegis-guest within 1 ms" in r.stderr, r.stderr
    r, res = vm_json(shared_state, "echo", "ok")  # the snapshot was not at fault: still used
    assert res["start"] == "restore" and "snapshot_build_ms" not in res and res["stdout"] == "ok\n"
