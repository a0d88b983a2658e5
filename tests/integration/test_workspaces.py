"""Named workspaces: `aegis workspace create|list|info|delete`, `aegis run
--workspace NAME`, instances on them, the API's /v1/workspaces, size
limits, and the traversal corpus (HOSTILE.md A-07 names and paths, A-08
injection, E-05/E-06 symlinks and symlink swaps): each hostile name is
refused with nothing created or touched anywhere, and what a sandbox left
in its workspace is never followed out of it."""
import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import AEGIS, TEST_BACKEND, api, run
from test_rootless import DELEGATED, as_user, user  # noqa: F401  (the rootless fixture)

MiB = 1 << 20


def aegis(env, *args, **kw):
    return run([AEGIS, *args], env=env, **kw)


def mounts_below(path):
    """Mount points at or below path, from our mountinfo."""
    out = []
    for line in open("/proc/self/mountinfo"):
        point = line.split()[4].replace("\\040", " ")
        if point == path or point.startswith(path + "/"):
            out.append(point)
    return out


def mount_options(path):
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        if f[4] == path:
            return f[5].split(",")
    return None


def loops_backed_by(image):
    out = run(["losetup", "-a"]).stdout
    return [l for l in out.splitlines() if image in l]


@pytest.fixture
def env(daemon_env):
    """daemon_env (a private state dir and socket; the daemon only on
    demand), plus a canary dir beside the state dir. Afterwards instances
    and workspaces are deleted and nothing stays mounted."""
    base = os.path.dirname(daemon_env["AEGIS_STATE_DIR"])
    canary = os.path.join(base, "canary")
    os.makedirs(os.path.join(canary, "sub"))
    for rel, data in (("keep.txt", "precious\n"), ("sub/deep.txt", "also precious\n")):
        with open(os.path.join(canary, rel), "w") as f:
            f.write(data)
    e = dict(daemon_env, CANARY=canary, BASE=base)
    yield e
    idir = os.path.join(daemon_env["AEGIS_STATE_DIR"], "instances")
    for name in os.listdir(idir) if os.path.isdir(idir) else []:
        aegis(daemon_env, "instance", "delete", name)
    wdir = os.path.join(daemon_env["AEGIS_STATE_DIR"], "workspaces")
    for name in os.listdir(wdir) if os.path.isdir(wdir) else []:
        aegis(daemon_env, "workspace", "delete", name)
    for point in sorted(mounts_below(base), reverse=True):
        subprocess.run(["umount", point])
    assert not mounts_below(base)


def state(env, *rel):
    return os.path.join(env["AEGIS_STATE_DIR"], *rel)


def data(env, name, *rel):
    return state(env, "workspaces", name, "data", *rel)


def snapshot(root):
    """Everything under root as it is on disk (never following a link):
    type, mode, size, mtime and ctime of each entry, the content of files."""
    snap = {}
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for n in [""] + dirs + files:
            p = os.path.join(dirpath, n) if n else dirpath
            st = os.lstat(p)
            entry = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if os.path.islink(p):
                entry += (os.readlink(p),)
            elif os.path.isfile(p) and st.st_size < MiB:
                entry += (open(p, "rb").read(),)
            snap[os.path.relpath(p, root)] = entry
    return snap


def info(env, name):
    p = aegis(env, "workspace", "info", name, "--json")
    assert p.returncode == 0, p
    return json.loads(p.stdout)


def one_line_error(p, status=125):
    assert p.returncode == status, p
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aegis: "), p.stderr
    return lines[0]


def wait_for(cond, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- the basics ---------------------------------------------------------

def test_create_list_info_delete(env):
    p = aegis(env, "workspace", "create", "myapp")
    assert p.returncode == 0 and p.stdout == "myapp: created\n", p
    assert os.path.isdir(data(env, "myapp"))
    line = one_line_error(aegis(env, "workspace", "create", "myapp"))
    assert "exists" in line
    assert aegis(env, "workspace", "create", "other").returncode == 0
    lst = aegis(env, "workspace", "list")
    assert lst.returncode == 0 and re.search(r"^myapp\s+none\s+\d{4}-", lst.stdout, re.M), lst
    js = json.loads(aegis(env, "workspace", "list", "--json").stdout)
    assert [w["name"] for w in js["workspaces"]] == ["myapp", "other"]
    assert js["workspaces"][0]["size_bytes"] is None and js["workspaces"][0]["created"] > 0
    i = info(env, "myapp")
    assert i["path"] == data(env, "myapp") and i["used_bytes"] == 0 and i["used_complete"]
    assert i["instances"] == [] and i["in_use"] is False and i["size_bytes"] is None
    human = aegis(env, "workspace", "info", "myapp")
    assert "size limit  none" in human.stdout and "in use      no" in human.stdout, human
    assert aegis(env, "workspace", "delete", "myapp").stdout == "myapp: deleted\n"
    assert not os.path.exists(state(env, "workspaces", "myapp"))
    assert "no workspace named 'myapp'" in one_line_error(aegis(env, "workspace", "info", "myapp"))
    assert "no workspace" in one_line_error(aegis(env, "workspace", "delete", "myapp"))
    assert [w["name"] for w in json.loads(aegis(env, "workspace", "list", "--json").stdout)["workspaces"]] \
        == ["other"]


def test_one_create_of_a_name_wins(env):
    """A-09 for workspaces: racing creates of one name (with and without a
    size limit), exactly one wins; the losers leave nothing behind."""
    for name, extra, n in (("race", (), 16), ("racesz", ("--size", "16m"), 4)):
        procs = [subprocess.Popen([AEGIS, "workspace", "create", name, *extra], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
        results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
        assert [r for r, _ in results].count(0) == 1, results
        assert all("exists" in e for r, e in results if r), results
    assert sorted(os.listdir(state(env, "workspaces"))) == ["race", "racesz"]
    image = state(env, "workspaces", "racesz", "image")
    assert len(loops_backed_by(state(env, "workspaces"))) == 1 and len(loops_backed_by(image)) == 1
    assert mounts_below(state(env, "workspaces")) == [data(env, "racesz")]


def test_lock_protocol(env):
    """The lock bytes of workspaces.h: one reading (byte 0, as info holds it
    while counting) holds off a delete but is not "in use"; a user (bytes 0
    and 2, as a run or an instance's shim holds them) is."""
    aegis(env, "workspace", "create", "locks")
    fd = os.open(state(env, "workspaces", "locks", "lock"), os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH, 1, 0)
        assert info(env, "locks")["in_use"] is False
        assert "being read" in one_line_error(aegis(env, "workspace", "delete", "locks"))
        fcntl.lockf(fd, fcntl.LOCK_SH, 1, 2)
        assert info(env, "locks")["in_use"] is True
        assert "in use by a run" in one_line_error(aegis(env, "workspace", "delete", "locks"))
    finally:
        os.close(fd)
    assert info(env, "locks")["in_use"] is False
    assert aegis(env, "workspace", "delete", "locks").returncode == 0


def test_files_persist_across_runs(env):
    assert aegis(env, "workspace", "create", "myapp").returncode == 0
    p = aegis(env, "run", "--workspace", "myapp", "--", "sh", "-c", "echo hello > /workspace/f; id -u")
    assert p.returncode == 0 and p.stdout == "0\n", p
    p = aegis(env, "run", "--workspace", "myapp", "--", "cat", "/workspace/f")
    assert p.returncode == 0 and p.stdout == "hello\n", p
    assert open(data(env, "myapp", "f")).read() == "hello\n"


def test_unknown_or_bad_name_in_run_is_one_line(env):
    line = one_line_error(aegis(env, "run", "--workspace", "nosuch", "--", "true"))
    assert "aegis workspace create nosuch" in line and "./nosuch" in line, line
    line = one_line_error(aegis(env, "run", "--workspace-ro", "UPPER", "--", "true"))
    assert "not a workspace name" in line, line
    # a path is a path: ./NAME is the directory here, not the workspace
    d = os.path.join(env["BASE"], "code")
    os.mkdir(d)
    p = aegis(env, "run", "--workspace", "./code", "--", "sh", "-c", "echo x > /workspace/y", cwd=env["BASE"])
    assert p.returncode == 0 and os.path.exists(os.path.join(d, "y")), p
    assert not os.path.exists(state(env, "workspaces"))


def test_read_only_refuses_writes(env):
    aegis(env, "workspace", "create", "ro")
    p = aegis(env, "run", "--workspace-ro", "ro", "--", "sh", "-c", "echo x > /workspace/x")
    assert p.returncode != 0 and "Read-only file system" in p.stderr, p
    assert not os.path.exists(data(env, "ro", "x"))
    # the same write, read-write: the probe works
    p = aegis(env, "run", "--workspace", "ro", "--", "sh", "-c", "echo x > /workspace/x")
    assert p.returncode == 0 and os.path.exists(data(env, "ro", "x")), p
    p = aegis(env, "run", "--workspace", "ro", "--workspace-mode", "ro", "--", "rm", "/workspace/x")
    assert p.returncode != 0 and os.path.exists(data(env, "ro", "x")), p


def test_two_runs_at_once_share_it(env):
    aegis(env, "workspace", "create", "shared")
    script = ("echo {me} > /workspace/{me}; i=0; while [ ! -e /workspace/{other} ]; do "
              "sleep 0.05; i=$((i+1)); [ $i -gt 400 ] && exit 3; done; cat /workspace/{other}")
    runs = [subprocess.Popen([AEGIS, "run", "--workspace", "shared", "--", "sh", "-c",
                              script.format(me=me, other=other)], env=env, stdout=subprocess.PIPE, text=True)
            for me, other in (("a", "b"), ("b", "a"))]
    outs = [r.communicate(timeout=60)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0] and outs == ["b\n", "a\n"], outs


def test_delete_refused_while_a_run_holds_it(env):
    aegis(env, "workspace", "create", "busy")
    r = subprocess.Popen([AEGIS, "run", "--workspace", "busy", "--", "sh", "-c",
                          "touch /workspace/started; sleep 30"], env=env)
    try:
        wait_for(lambda: os.path.exists(data(env, "busy", "started")), what="the run")
        assert info(env, "busy")["in_use"] is True
        line = one_line_error(aegis(env, "workspace", "delete", "busy"))
        assert "in use by a run" in line, line
        assert os.path.exists(data(env, "busy", "started"))
    finally:
        r.terminate()
        r.wait(timeout=30)
    assert info(env, "busy")["in_use"] is False
    assert aegis(env, "workspace", "delete", "busy").returncode == 0


def test_instances_use_it_and_their_delete_keeps_it(env):
    aegis(env, "workspace", "create", "myapp")
    aegis(env, "run", "--workspace", "myapp", "--", "sh", "-c", "echo from-run > /workspace/run.txt")
    p = aegis(env, "instance", "start", "--name", "dev", "--workspace", "myapp", "--", "sh", "-c",
              # written whole (renamed into place): the delete below may come at any moment
              "cat /workspace/run.txt > /workspace/seen; echo from-instance > /workspace/.inst "
              "&& mv /workspace/.inst /workspace/inst.txt; sleep 60")
    assert p.returncode == 0, p
    wait_for(lambda: os.path.exists(data(env, "myapp", "inst.txt")), what="the instance")
    assert open(data(env, "myapp", "seen")).read() == "from-run\n"
    inst = json.loads(aegis(env, "instance", "info", "dev").stdout)
    assert inst["workspace"] == "myapp"
    config = json.load(open(state(env, "instances", "dev", "config.json")))
    assert config["workspace"] == "myapp"  # kept as given
    i = info(env, "myapp")
    assert i["instances"] == ["dev"] and i["in_use"] is True
    line = one_line_error(aegis(env, "workspace", "delete", "myapp"))
    assert "instance dev" in line, line
    # stopped, it is still the instance's: refused all the same
    assert aegis(env, "instance", "disable", "dev").returncode == 0
    assert info(env, "myapp")["in_use"] is False
    assert "instance dev" in one_line_error(aegis(env, "workspace", "delete", "myapp"))
    st, body = api(env, "DELETE", "/v1/workspaces/myapp")
    assert st == 409 and body["error"]["code"] == "in_use", body
    # started again from its config: the name is resolved again
    assert aegis(env, "instance", "start", "--name", "dev").returncode == 0
    wait_for(lambda: info(env, "myapp")["in_use"], what="the restart")
    assert aegis(env, "instance", "delete", "dev").returncode == 0
    p = aegis(env, "run", "--workspace", "myapp", "--", "cat", "/workspace/run.txt", "/workspace/inst.txt")
    assert p.stdout == "from-run\nfrom-instance\n", p
    assert info(env, "myapp")["instances"] == []
    assert aegis(env, "workspace", "delete", "myapp").returncode == 0


def test_instance_refuses_an_unknown_workspace(env):
    line = one_line_error(aegis(env, "instance", "start", "--name", "x", "--workspace", "nosuch", "--", "true"))
    assert "workspace" in line, line
    assert not os.path.exists(state(env, "instances", "x"))
    st, body = api(env, "POST", "/v1/instances", {"name": "x", "argv": ["true"], "workspace": "../etc"})
    assert st == 400 and body["error"]["field"] == "workspace", body


def test_overlay_mode_and_replay_with_a_named_workspace(env):
    aegis(env, "workspace", "create", "ov")
    with open(data(env, "ov", "f"), "w") as f:
        f.write("one\n")
    out = os.path.join(env["BASE"], "out")
    p = aegis(env, "run", "--workspace", "ov", "--workspace-mode", "overlay", "--artifacts", out, "--",
              "sh", "-c", "echo two >> /workspace/f; echo new > /workspace/g")
    assert p.returncode == 0, p
    assert open(data(env, "ov", "f")).read() == "one\n" and not os.path.exists(data(env, "ov", "g"))
    result = json.load(open(os.path.join(out, "result.json")))
    assert result["workspace"]["name"] == "ov" and result["workspace"]["mode"] == "overlay"
    assert aegis(env, "apply", out).returncode == 0
    assert open(data(env, "ov", "f")).read() == "one\ntwo\n" and open(data(env, "ov", "g")).read() == "new\n"
    # a replay holds the workspace by its name again
    r = subprocess.Popen([AEGIS, "replay", out, "--artifacts", os.path.join(env["BASE"], "out2")], env=env)
    r.wait(timeout=60)
    assert r.returncode == 0
    result = json.load(open(os.path.join(env["BASE"], "out2", "result.json")))
    assert result["workspace"]["name"] == "ov"


# --- the API -------------------------------------------------------------

def test_api_lifecycle(env):
    assert aegis(env, "up").returncode == 0
    assert api(env, "GET", "/v1/workspaces") == (200, {"workspaces": []})
    st, body = api(env, "POST", "/v1/workspaces", {"name": "web"})
    assert st == 201 and body["name"] == "web" and body["size_bytes"] is None, body
    st, body = api(env, "POST", "/v1/workspaces", {"name": "web"})
    assert st == 409 and body["error"]["code"] == "exists" and body["error"]["field"] == "name", body
    st, body = api(env, "GET", "/v1/workspaces/web")
    assert st == 200 and body["path"] == data(env, "web") and body["in_use"] is False, body
    st, body = api(env, "GET", "/v1/workspaces")
    assert st == 200 and [w["name"] for w in body["workspaces"]] == ["web"]
    st, body = api(env, "POST", "/v1/workspaces", {"name": "w2", "colour": "red"})
    assert st == 400 and body["error"]["field"] == "colour", body
    for size in ("lots", -1, 0, "1k", True, "99t"):
        st, body = api(env, "POST", "/v1/workspaces", {"name": "w3", "size": size})
        assert st == 400 and body["error"]["field"] == "size", (size, body)
    assert api(env, "DELETE", "/v1/workspaces/web") == (200, {"name": "web", "state": "deleted"})
    st, body = api(env, "GET", "/v1/workspaces/web")
    assert st == 404 and body["error"]["code"] == "not_found", body
    st, body = api(env, "DELETE", "/v1/workspaces/web")
    assert st == 404, body
    st, body = api(env, "PUT", "/v1/workspaces/web")
    assert st == 405, body
    assert not os.listdir(state(env, "workspaces"))


# --- size limits ----------------------------------------------------------

def test_size_limit(env):
    p = aegis(env, "workspace", "create", "big", "--size", "32m")
    assert p.returncode == 0 and "size limit 32 MiB" in p.stdout, p
    image = state(env, "workspaces", "big", "image")
    opts = mount_options(data(env, "big"))
    assert opts and "nosuid" in opts and "nodev" in opts, opts
    assert len(loops_backed_by(image)) == 1
    assert os.stat(data(env, "big")).st_uid == 0  # the creator's
    i = info(env, "big")
    assert i["size_bytes"] == 32 * MiB and 16 * MiB < i["free_bytes"] <= 32 * MiB, i
    assert "size limit  32 MiB" in aegis(env, "workspace", "info", "big").stdout
    p = aegis(env, "run", "--workspace", "big", "--", "sh", "-c",
              "echo keep > /workspace/keep; dd if=/dev/zero of=/workspace/fill bs=1M count=64")
    # dd fails with ENOSPC (status 1), or the engine, seeing the workspace
    # full, stops the run first (137): either way the limit is named
    assert (p.returncode == 1 and "No space left on device" in p.stderr) or p.returncode == 137, p
    assert "aegis: disk_full" in p.stderr, p
    p = aegis(env, "run", "--workspace", "big", "--", "cat", "/workspace/keep")
    assert p.returncode == 0 and p.stdout == "keep\n", p
    i = info(env, "big")
    # full: or as full as the engine's watch lets it get (it stops a run
    # below 2 MiB free on a named workspace's ext4: EXT4_FULL_SLACK)
    assert i["used_bytes"] > 16 * MiB and i["free_bytes"] < 2 * MiB, i
    # two users at once: one mount, one loop device
    r = subprocess.Popen([AEGIS, "run", "--workspace", "big", "--", "sh", "-c",
                          "rm /workspace/fill; touch /workspace/a; sleep 30"], env=env)
    try:
        wait_for(lambda: os.path.exists(data(env, "big", "a")), what="the first run")
        p = aegis(env, "run", "--workspace", "big", "--", "ls", "/workspace")
        assert p.stdout.split() == ["a", "keep"], p
        assert len(loops_backed_by(image)) == 1 and mounts_below(data(env, "big")) == [data(env, "big")]
    finally:
        r.terminate()
        r.wait(timeout=30)
    assert aegis(env, "workspace", "delete", "big").returncode == 0
    assert not mounts_below(state(env, "workspaces")) and not loops_backed_by(image)


def test_size_limit_mounted_again_after_a_reboot(env):
    """The mount is gone (as after a reboot): the first user makes it again,
    and the limit holds again."""
    aegis(env, "workspace", "create", "big", "--size", "16m")
    aegis(env, "run", "--workspace", "big", "--", "sh", "-c", "echo keep > /workspace/keep")
    assert subprocess.run(["umount", data(env, "big")]).returncode == 0
    assert not mounts_below(data(env, "big")) and os.listdir(data(env, "big")) == []
    p = aegis(env, "run", "--workspace", "big", "--", "sh", "-c",
              "cat /workspace/keep; dd if=/dev/zero of=/workspace/fill bs=1M count=32 2>&1")
    # dd's ENOSPC, or the engine's disk_full stop when it sees the
    # workspace full first (a slow CPU: a guest under TCG)
    assert "keep\n" in p.stdout, p
    assert ("No space left" in p.stdout and p.returncode == 1) or \
        (p.returncode == 137 and "aegis: disk_full" in p.stderr), p
    assert mounts_below(data(env, "big")) == [data(env, "big")]
    # full now, from before: reading it is no reason to stop a run, however long
    p = aegis(env, "run", "--workspace", "big", "--", "sh", "-c", "sleep 1.5; cat /workspace/keep")
    assert p.returncode == 0 and p.stdout == "keep\n", p


def test_size_limit_needs_root(user):  # noqa: F811
    """Rootless: --size is refused, saying why, before anything is made; a
    workspace without a limit works rootless too (the sandbox reopens data/
    by path and checks it is still the same directory)."""
    st = os.path.join(user["work"], "state-size")
    env = dict(os.environ, AEGIS_STATE_DIR=st)
    aegis_bin = os.path.join(user["bin"], "aegis")
    p = as_user(user, aegis_bin, "workspace", "create", "lim", "--size", "32m", env=env)
    line = one_line_error(p)
    assert "root" in line and "CAP_SYS_ADMIN" in line, line
    assert not os.path.exists(st)
    assert as_user(user, aegis_bin, "workspace", "create", "mine", env=env).returncode == 0
    p = as_user(user, aegis_bin, "run", "--cgroup-parent", DELEGATED, "--workspace", "mine", "--",
                "sh", "-c", "echo hi > /workspace/f", env=env)
    assert p.returncode == 0, p
    f = os.path.join(st, "workspaces", "mine", "data", "f")
    assert open(f).read() == "hi\n" and os.stat(f).st_uid == user["uid"]
    # data/ swapped for a symlink: refused rootless as well
    outside = os.path.join(user["work"], "outside-rootless")
    os.mkdir(outside)
    os.chown(outside, user["uid"], user["gid"])
    os.rename(os.path.join(st, "workspaces", "mine", "data"), os.path.join(st, "data.real"))
    os.symlink(outside, os.path.join(st, "workspaces", "mine", "data"))
    p = as_user(user, aegis_bin, "run", "--cgroup-parent", DELEGATED, "--workspace", "mine", "--",
                "sh", "-c", "echo x > /workspace/pwned", env=env)
    assert "symlink" in one_line_error(p) and os.listdir(outside) == []
    assert as_user(user, aegis_bin, "workspace", "delete", "mine", env=env).returncode == 0
    assert os.path.isdir(outside)
    shutil.rmtree(st)
    shutil.rmtree(os.path.join(user["work"], "outside-rootless"))


# --- traversal corpus (A-07, A-08) ----------------------------------------

ESCAPE = "/tmp/aegis-ws-escape-probe"
CORPUS = ["..", ".", "%2e%2e", "%2E%2E/x", "a/b", "/etc", ESCAPE, "-x", "x" * 64, "x" * 300, "café",
          "", "../escape", "a/../../b", "..%2f..%2fetc", "UPPER", "a b", "a\nb", "\x1b[2J", "$(id)",
          "ok;rm", "a\\b", "\u002e\u002e"]


def test_cli_corpus_refused_and_nothing_touched(env):
    assert aegis(env, "workspace", "create", "ok").returncode == 0  # the store exists
    before = snapshot(env["BASE"])
    for name in CORPUS:
        for args in (("create", name), ("create", name, "--size", "32m"), ("info", name), ("delete", name),
                     ("info", name, "--json")):
            p = aegis(env, "workspace", *args)
            assert p.returncode == 125, (args, p)
            assert len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)
        if "/" not in name and not name.startswith((".", "~")):
            # a workspace name for run: refused too (a path is a path)
            one_line_error(aegis(env, "run", "--workspace", name, "--", "true"))
    assert snapshot(env["BASE"]) == before
    assert not os.path.exists(ESCAPE)
    assert aegis(env, "workspace", "info", "ok").returncode == 0


API_PATHS = ["..", ".", "%2e%2e", "%2E%2E", "a/b", "a%2fb", "%2fetc", "..%2f..%2fetc", "-x", "x" * 64,
             "x" * 300, "%00", "a%00b", "ok%00", "caf%C3%A9", "", "%5c..%5c", "a/../..", "ok/../ok"]
API_NAMES = [".", "..", "%2e%2e", "a/b", "/etc", ESCAPE, "-x", "x" * 64, "café", "", "../escape",
             "UPPER", "a\nb", 12, None, ["ok"], {"n": "ok"}]


def test_api_corpus_refused_and_nothing_touched(env):
    assert aegis(env, "workspace", "create", "ok").returncode == 0
    assert aegis(env, "up").returncode == 0
    before = snapshot(env["BASE"])
    for raw in API_PATHS:
        for method in ("GET", "DELETE"):
            st, body = api(env, method, "/v1/workspaces/" + raw)
            assert st == 400 and body["error"]["field"] == "name", (method, raw, st, body)
    for name in API_NAMES:
        for extra in ({}, {"size": "32m"}):
            st, body = api(env, "POST", "/v1/workspaces", {"name": name, **extra})
            assert st == 400 and body["error"]["field"] == "name", (name, st, body)
    # a NUL inside the JSON string: the body itself is refused
    st, body = api(env, "POST", "/v1/workspaces", b'{"name": "ok\\u0000x"}')
    assert st == 400 and body["error"]["field"] == "body", body
    assert snapshot(env["BASE"]) == before
    assert not os.path.exists(ESCAPE)
    assert api(env, "GET", "/v1/workspaces/ok")[0] == 200


# --- symlinks left by a sandbox, and swapped under us (E-05, E-06) ---------

def outside_dir(env):
    """A directory beside the state dir holding a 4 MiB canary; proven
    reachable and writable through a symlink by this (root) process."""
    outside = os.path.join(env["BASE"], "outside")
    os.makedirs(os.path.join(outside, "victim"))
    with open(os.path.join(outside, "canary.bin"), "wb") as f:
        f.write(b"c" * (4 * MiB))
    with open(os.path.join(outside, "victim", "keep.txt"), "w") as f:
        f.write("keep\n")
    link = os.path.join(env["BASE"], "probe-link")
    os.symlink(outside, link)
    with open(os.path.join(link, "probe"), "w") as f:
        f.write("x")
    os.unlink(os.path.join(link, "probe"))  # what a following delete would do
    os.unlink(link)
    return outside


def test_symlinks_out_are_neither_counted_nor_deleted(env):
    outside = outside_dir(env)
    aegis(env, "workspace", "create", "evil")
    p = aegis(env, "run", "--workspace", "evil", "--", "sh", "-c",
              f"ln -s {outside} /workspace/evil; ln -s / /workspace/evil2; mkdir -p /workspace/d/e; "
              f"ln -s ../../../../.. /workspace/d/e/up; ln -s {outside}/canary.bin /workspace/c; "
              "echo small > /workspace/d/f")
    assert p.returncode == 0, p
    before = snapshot(outside)
    # a walk that followed links would count the canary (and all of /)
    du = run(["du", "-sLb", data(env, "evil", "evil")]).stdout.split()[0]
    assert int(du) >= 4 * MiB
    i = info(env, "evil")
    assert i["used_bytes"] < MiB and i["used_complete"], i
    assert aegis(env, "workspace", "delete", "evil").returncode == 0
    assert snapshot(outside) == before
    assert not os.path.exists(state(env, "workspaces", "evil"))


def test_data_swapped_for_a_symlink_is_refused(env):
    outside = outside_dir(env)
    # the probe: mounted, this command writes the directory it is given
    p = aegis(env, "run", "--workspace", outside, "--", "sh", "-c", "echo x > /workspace/pwned")
    assert p.returncode == 0 and os.path.exists(os.path.join(outside, "pwned")), p
    os.unlink(os.path.join(outside, "pwned"))
    aegis(env, "workspace", "create", "swapped")
    ws = state(env, "workspaces", "swapped")
    os.rename(os.path.join(ws, "data"), os.path.join(env["BASE"], "data.real"))
    os.symlink(outside, os.path.join(ws, "data"))
    before = snapshot(outside)
    line = one_line_error(aegis(env, "run", "--workspace", "swapped", "--", "sh", "-c",
                                "echo x > /workspace/pwned"))
    assert "symlink" in line and "refused" in line, line
    assert "symlink" in one_line_error(aegis(env, "workspace", "info", "swapped"))
    # an instance on it fails to start, writing nothing
    aegis(env, "instance", "start", "--name", "inst", "--workspace", "swapped", "--", "sh", "-c",
          "echo x > /workspace/pwned")
    wait_for(lambda: json.loads(aegis(env, "instance", "info", "inst").stdout)["state"] == "failed",
             what="the instance to fail")
    assert "symlink" in json.loads(aegis(env, "instance", "info", "inst").stdout)["exit"]["error"]
    aegis(env, "instance", "delete", "inst")
    assert snapshot(outside) == before
    # delete removes the link, never what it points at
    assert aegis(env, "workspace", "delete", "swapped").returncode == 0
    assert snapshot(outside) == before and not os.path.lexists(ws)


def test_workspace_dir_swapped_for_a_symlink_is_refused(env):
    outside = outside_dir(env)
    os.makedirs(os.path.join(outside, "data"))
    aegis(env, "workspace", "create", "real")  # the store exists
    os.symlink(outside, state(env, "workspaces", "fake"))
    before = snapshot(outside)
    for args in (("run", "--workspace", "fake", "--", "sh", "-c", "echo x > /workspace/pwned"),
                 ("workspace", "info", "fake"), ("workspace", "delete", "fake")):
        assert "symlink" in one_line_error(aegis(env, *args)), args
    assert snapshot(outside) == before
    os.unlink(state(env, "workspaces", "fake"))


def test_symlink_swaps_during_use(env):
    """E-06: the sandbox flips d/ between a directory and a symlink to the
    outside (RENAME_EXCHANGE, as fast as it can) while the host counts the
    workspace again and again; then it is deleted in whatever state the
    flipping left it. Nothing outside is counted or touched."""
    outside = outside_dir(env)
    aegis(env, "workspace", "create", "race")
    before = snapshot(outside)
    flipper = f"""
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
os.makedirs("/workspace/d/sub")
open("/workspace/d/sub/f", "w").write("inside")
os.symlink("{outside}", "/workspace/l")
os.symlink("/", "/workspace/l2")
open("/workspace/started", "w").close()
end = time.monotonic() + 4
n = 0
while time.monotonic() < end:
    for a, b in ((b"/workspace/d", b"/workspace/l"), (b"/workspace/d/sub", b"/workspace/l2")):
        if libc.renameat2(-100, a, -100, b, 2) == 0:
            n += 1
        elif ctypes.get_errno() == 22:  # no RENAME_EXCHANGE (9p, in a vm guest): three renames
            os.rename(a, b"/workspace/t")
            os.rename(b, a)
            os.rename(b"/workspace/t", b)
            n += 1
print(n)
"""
    r = subprocess.Popen([AEGIS, "run", "--workspace", "race", "--", "python3", "-c", flipper], env=env,
                         stdout=subprocess.PIPE, text=True)
    wait_for(lambda: os.path.exists(data(env, "race", "started")), what="the flipper")
    counts = []
    while r.poll() is None:
        counts.append(info(env, "race")["used_bytes"])
    out, _ = r.communicate(timeout=30)
    assert r.returncode == 0 and int(out) > (1000 if TEST_BACKEND == "ns" else 100), out
    assert len(counts) >= 5 and max(counts) < MiB, counts
    assert snapshot(outside) == before
    assert aegis(env, "workspace", "delete", "race").returncode == 0
    assert snapshot(outside) == before


def test_a_create_killed_half_way_is_undone_by_the_next(env):
    """A create builds under .new-NAME-PID-NONCE and renames it into place;
    one whose process died is removed by the next create (with a size
    limit, its image's mount too), one whose process lives is left alone."""
    assert aegis(env, "workspace", "create", "first").returncode == 0
    top = state(env, "workspaces")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = os.path.join(top, f".new-gone-{dead.pid}-deadbeef")
    live = os.path.join(top, f".new-busy-{os.getpid()}-cafef00d")
    for d in (stale, live):
        os.makedirs(os.path.join(d, "data"))
        open(os.path.join(d, "data", "f"), "w").close()
    assert aegis(env, "workspace", "create", "second").returncode == 0
    assert not os.path.exists(stale) and os.path.exists(os.path.join(live, "data", "f"))
    assert [w["name"] for w in json.loads(aegis(env, "workspace", "list", "--json").stdout)["workspaces"]] \
        == ["first", "second"]


def test_apply_holds_the_named_workspace(env, tmp_path):
    """`aegis apply` of an overlay run on a named workspace takes it as a run
    does: into the workspace while it exists, a clear error once deleted."""
    assert aegis(env, "workspace", "create", "rev").returncode == 0
    arts = tmp_path / "arts"
    p = aegis(env, "run", "--workspace", "rev", "--workspace-mode", "overlay", "--artifacts", str(arts), "--",
              "sh", "-c", "echo reviewed > /workspace/new.txt")
    assert p.returncode == 0, p
    assert not os.path.exists(data(env, "rev", "new.txt"))
    p = aegis(env, "apply", str(arts))
    assert p.returncode == 0 and open(data(env, "rev", "new.txt")).read() == "reviewed\n", p
    arts2 = tmp_path / "arts2"
    assert aegis(env, "run", "--workspace", "rev", "--workspace-mode", "overlay", "--artifacts", str(arts2),
                 "--", "sh", "-c", "echo later > /workspace/later.txt").returncode == 0
    assert aegis(env, "workspace", "delete", "rev").returncode == 0
    line = one_line_error(aegis(env, "apply", str(arts2)))
    assert "no workspace named 'rev'" in line, line  # the hold's word, before any file is touched
