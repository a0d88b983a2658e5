"""Rootless `aegis run`: the same sandbox, started by an unprivileged user.

The test (run as root, as CI does) makes an unprivileged user, delegates a
cgroup to it the way a cgroup manager would, and runs aegis as that user.
"""
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import AEGIS, PROBE, TEST_BACKEND, http_server

USER = "aegis-rootless"
DELEGATED = "/aegis-rootless-test"


def _cgroup_dirs():
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return ["/sys/fs/cgroup" + DELEGATED]
    # instances (the daemon test) are also frozen and CPU-accounted
    return [f"/sys/fs/cgroup/{c}{DELEGATED}" for c in ("memory", "pids", "freezer", "cpuacct")]


def _public_dir(prefix):
    """A directory the unprivileged user can reach (pytest's tmp is 0700)."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    return d


@pytest.fixture(scope="module")
def user():
    assert os.geteuid() == 0, "the rootless tests set up a user and must start as root"
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", USER], check=True)
        pw = pwd.getpwnam(USER)
    # Binaries where the user can reach them, wherever the checkout lives.
    bindir = _public_dir("aegis-rootless-bin-")
    for p in (AEGIS, PROBE, *(os.path.join(os.path.dirname(AEGIS), b) for b in ("aegisd", "aegis-shim", "aegis-image"))):
        shutil.copy2(p, bindir)
    if TEST_BACKEND == "vm":  # the guest's kernel and initramfs, found beside aegis
        shutil.copytree(os.path.join(os.path.dirname(AEGIS), "vm"), os.path.join(bindir, "vm"))
    # Delegate a cgroup, as systemd does for a user session.
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        with open("/sys/fs/cgroup/cgroup.subtree_control", "w") as f:
            f.write("+memory +pids +cpu")
    for d in _cgroup_dirs():
        os.makedirs(d, exist_ok=True)
        for root, dirs, files in os.walk(d):
            for n in [root] + [os.path.join(root, x) for x in files]:
                os.chown(n, pw.pw_uid, pw.pw_gid)
    work = _public_dir("aegis-rootless-ws-")
    os.chown(work, pw.pw_uid, pw.pw_gid)
    home = _public_dir("aegis-rootless-home-")
    os.chown(home, pw.pw_uid, pw.pw_gid)
    yield {"uid": pw.pw_uid, "gid": pw.pw_gid, "bin": bindir, "work": work, "home": home}
    shutil.rmtree(home)
    shutil.rmtree(bindir)
    shutil.rmtree(work)
    for d in _cgroup_dirs():
        if os.path.isdir(d + "/anchor"):  # the daemon's frozen freezer anchor, left on purpose
            os.rmdir(d + "/anchor")
        os.rmdir(d)


def as_user(user, *args, **kw):
    # the user's own HOME (a vm run keeps its /etc copy and snapshots in
    # ~/.local/share/aegis), not root's from our environment
    env = dict(kw.pop("env", os.environ), HOME=user["home"])
    env.pop("XDG_DATA_HOME", None)
    env.pop("XDG_RUNTIME_DIR", None)
    return subprocess.run(list(args), user=user["uid"], group=user["gid"], extra_groups=[],
                          capture_output=True, text=True, timeout=180 if TEST_BACKEND == "vm" else 60,
                          cwd="/", env=env, **kw)


def rootless(user, *argv, opts=()):
    return as_user(user, os.path.join(user["bin"], "aegis"), "run",
                   "--cgroup-parent", DELEGATED, *opts, "--", *argv)


def probe_in(user, name, *args):
    return rootless(user, "/workspace/aegis-probe", name, *args, opts=("--workspace-ro", user["bin"]))


def probe_out(user, name, *args):
    return as_user(user, os.path.join(user["bin"], "aegis-probe"), name, *args)


def test_rootless_run_and_exit_status(user):
    p = rootless(user, "sh", "-c", "echo hi; exit 5")
    assert p.stdout == "hi\n" and p.returncode == 5, p


def test_rootless_low_ports_in_the_sandboxs_own_network(user):
    """Rootless too, the sandbox's own network namespace lets its processes
    bind ports below 1024, which the user cannot do on the host."""
    code = "import socket; socket.socket().bind(('127.0.0.1', 80)); print('bound')"
    p = rootless(user, "python3", "-c", code)
    assert p.returncode == 0 and p.stdout == "bound\n", p
    outside = as_user(user, "python3", "-c", code)
    assert outside.returncode != 0 and "Permission denied" in outside.stderr, outside


def test_rootless_sandbox_root_is_the_callers_uid(user):
    p = rootless(user, "sh", "-c", "id -u; cat /proc/self/uid_map")
    lines = p.stdout.split("\n")
    assert lines[0] == "0"
    if TEST_BACKEND == "vm":
        # the uid map is the guest kernel's: sandbox root is an unprivileged
        # uid of the guest (the guest as a whole is QEMU, run by the caller)
        inside, outside, count = lines[1].split()
        assert inside == "0" and outside != "0" and count == "1", p.stdout
        return
    assert lines[1].split() == ["0", str(user["uid"]), "1"], p.stdout


def test_rootless_no_privileges(user):
    p = rootless(user, "grep", "-E", "^(CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):", "/proc/self/status")
    fields = dict(l.split(":\t") for l in p.stdout.splitlines())
    assert fields["CapEff"] == fields["CapBnd"] == fields["CapAmb"] == "0000000000000000"
    assert fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "2"


def test_rootless_workspace_is_writable_and_owned_by_user(user):
    p = rootless(user, "sh", "-c", "echo data > /workspace/out", opts=("--workspace", user["work"]))
    assert p.returncode == 0, p
    st = os.stat(os.path.join(user["work"], "out"))
    assert st.st_uid == user["uid"]


@pytest.mark.parametrize("probe", ["unshare-user", "io-uring", "keyctl", "socket-unix-ok"])
def test_rootless_hostile_spot_checks(user, probe):
    """E-14, E-26, E-28: blocked inside; the same unprivileged user can do it outside."""
    if probe == "socket-unix-ok":
        assert probe_in(user, "socket-unix").returncode == 0
        return
    outside = probe_out(user, probe)
    assert outside.returncode == 0, f"baseline failed: {outside.stdout}{outside.stderr}"
    inside = probe_in(user, probe)
    assert inside.returncode == 1 and "EPERM" in inside.stdout, inside


def test_rootless_int80_killed(user):
    """E-36: the same unprivileged user can make an int 0x80 call outside; inside it is killed."""
    assert probe_out(user, "int80").returncode == 0
    assert probe_in(user, "int80").returncode == 128 + 31


def test_rootless_fork_bomb_bounded(user):
    """R-01: the delegated cgroup's pids limit holds for rootless runs too,
    and stops the sandbox with the typed reason."""
    p = rootless(user, "/workspace/aegis-probe", "fork-bomb", "2",
                 opts=("--workspace-ro", user["bin"], "--pids", "64", "--timeout", "20s"))
    assert p.returncode == 137 and "pids" in p.stderr, p


def test_rootless_memory_limit(user):
    p = rootless(user, "python3", "-c", "b = bytearray(512 << 20)", opts=("--memory", "64m"))
    assert p.returncode == 137, p


def test_rootless_without_delegated_cgroup_fails_clearly(user):
    p = as_user(user, os.path.join(user["bin"], "aegis"), "run",
                "--cgroup-parent", "/not-delegated-to-anyone", "--", "true")
    assert p.returncode == 125
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "cgroup" in lines[0] and "--cgroup-parent" in lines[0], p.stderr


def test_rootless_leaves_no_cgroup(user):
    assert rootless(user, "true").returncode == 0
    for d in _cgroup_dirs():
        assert not [x for x in os.listdir(d) if x.startswith("run-")]


def test_rootless_exec_audit_and_policy(user):
    """The exec watch reads argv of rootless sandboxes too; landlock rules hold."""
    log = os.path.join(user["work"], "audit.jsonl")
    pol = os.path.join(user["work"], "p.json")
    with open(pol, "w") as f:
        f.write('{"commands": {"allow": ["/usr/bin/*"], "argv_deny": ["ls -la"]}}')
    os.chown(pol, user["uid"], user["gid"])
    p = rootless(user, "sh", "-c", "ls -l / >/dev/null; ls -la /; cp /usr/bin/id /tmp/id; /tmp/id; echo rc=$?",
                 opts=("--audit", log, "--policy", pol))
    assert "rc=126" in p.stdout, p
    import json
    execs = [json.loads(l) for l in open(log) if '"exec"' in l]
    assert any(e["argv"] == ["ls", "-l", "/"] and e["verdict"] == "allow" for e in execs), execs
    assert any(e["argv"] == ["ls", "-la", "/"] and e["verdict"] == "deny" for e in execs), execs
    assert as_user(user, os.path.join(user["bin"], "aegis"), "audit", "verify", log).returncode == 0


def test_rootless_overlay_and_apply(user):
    ws = os.path.join(user["work"], "ows")
    art = os.path.join(user["work"], "oart")
    os.mkdir(ws)
    with open(os.path.join(ws, "f"), "w") as f:
        f.write("one\n")
    for path in (ws, os.path.join(ws, "f")):
        os.chown(path, user["uid"], user["gid"])
    p = rootless(user, "sh", "-c", "echo two >> f; echo new > g",
                 opts=("--workspace", ws, "--workspace-mode", "overlay", "--artifacts", art))
    assert p.returncode == 0, p
    assert open(os.path.join(ws, "f")).read() == "one\n"
    a = as_user(user, os.path.join(user["bin"], "aegis"), "apply", art)
    assert a.returncode == 0, a
    assert open(os.path.join(ws, "f")).read() == "one\ntwo\n" and open(os.path.join(ws, "g")).read() == "new\n"


def test_rootless_egress_proxy(user):
    """allow mode as an unprivileged user: the proxy is the user's own process."""
    with http_server(b"hi\n") as port:
        net = ("--net", "allow", "--host", "web.test=127.0.0.1", "--allow", f"web.test:{port}")
        p = rootless(user, "curl", "-s", f"http://web.test:{port}/", opts=net)
        assert p.stdout == "hi\n", p
        p = rootless(user, "curl", "-s", "-i", f"http://other.test:{port}/", opts=net)
        assert "403" in p.stdout, p


def test_rootless_daemon_instances(user):
    """aegisd as an unprivileged user: instances in its delegated cgroup,
    exec, pause, resume, delete; nothing left behind."""
    state = os.path.join(user["work"], "daemon")
    env = dict(os.environ, AEGIS_SOCKET=os.path.join(state, "run", "aegisd.sock"),
               AEGIS_STATE_DIR=os.path.join(state, "state"), AEGIS_CGROUP_PARENT=DELEGATED)
    aegis = os.path.join(user["bin"], "aegis")

    def cli(*args, **kw):
        return as_user(user, aegis, *args, env=env, **kw)

    try:
        p = cli("instance", "start", "--name", "r", "--", "sleep", "600")
        assert p.returncode == 0, p
        deadline = time.monotonic() + 10
        while json.loads(cli("instance", "info", "r").stdout)["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        info = json.loads(cli("instance", "info", "r").stdout)
        shim = info["shim_pid"]
        assert os.stat(f"/proc/{shim}").st_uid == user["uid"]  # the shim is the user's
        assert any(os.path.isdir(d + f"/run-{shim}") for d in _cgroup_dirs())
        p = cli("exec", "r", "--", "sh", "-c", "id -u; cat /proc/self/uid_map")
        assert p.returncode == 0 and p.stdout.split()[:3] == ["0", "0", str(user["uid"])], p
        assert cli("instance", "pause", "r").returncode == 0
        assert json.loads(cli("instance", "info", "r").stdout)["state"] == "paused"
        assert cli("instance", "resume", "r").returncode == 0
        assert cli("exec", "r", "--", "true").returncode == 0
        assert json.loads(cli("instance", "info", "r").stdout)["resources"]["pids"] >= 1
        # an exposed port: the connection is made inside by the instance's PID 1
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        p = cli("instance", "start", "--name", "w", "--expose", f"{port}:8000", "--", "python3", "-m",
                "http.server", "--bind", "127.0.0.1", "8000")
        assert p.returncode == 0, p
        deadline = time.monotonic() + 15
        while True:
            got = subprocess.run(["curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
                                  f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
            if got == "200":
                break
            assert time.monotonic() < deadline, got
            time.sleep(0.1)
        # secrets, rootless: the store is the user's, the file secret's
        # tmpfs is made inside the user's namespaces
        assert cli("secret", "set", "R_KEY", input="rootless-secret-value").returncode == 0
        p = cli("instance", "start", "--name", "s", "--secret", "R_KEY", "--secret", "R_KEY:file", "--",
                "sleep", "600")
        assert p.returncode == 125 and "twice" in p.stderr, p  # one secret, one way
        assert cli("instance", "start", "--name", "s", "--secret", "R_KEY:file", "--", "sleep", "600").returncode == 0
        deadline = time.monotonic() + 10
        while json.loads(cli("instance", "info", "s").stdout)["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)
        p = cli("exec", "s", "--", "sh", "-c", "stat -c '%a %u' /run/secrets/R_KEY; cat /run/secrets/R_KEY")
        assert p.returncode == 0 and p.stdout == "400 0\n[secret:R_KEY]", p
        # S-04: the daemon is not dumpable: even its own user's other
        # processes cannot read its environment or memory (they can their own)
        daemon = subprocess.run(["pgrep", "-u", str(user["uid"]), "-x", "aegisd"], capture_output=True,
                                text=True).stdout.split()
        assert len(daemon) == 1, daemon
        p = as_user(user, "cat", f"/proc/{daemon[0]}/environ")
        assert p.returncode != 0 and "Permission denied" in p.stderr, p
        p = as_user(user, "sh", "-c", "cat /proc/$$/environ | wc -c")
        assert p.returncode == 0 and int(p.stdout) > 0, p
        assert cli("instance", "delete", "s").returncode == 0
        assert cli("instance", "delete", "w").returncode == 0
        assert cli("instance", "delete", "r").returncode == 0
        assert not any(os.path.exists(d + f"/run-{shim}") for d in _cgroup_dirs())
    finally:
        cli("instance", "delete", "r")
        cli("instance", "delete", "w")
        cli("instance", "delete", "s")
        cli("down")


def test_rootless_mcp(user):
    """aegis mcp as an unprivileged user: one-shot runs in the delegated
    cgroup ($AEGIS_CGROUP_PARENT, as aegisd's instances), an instance of the
    user's own daemon, and its workspace's files written and read by the
    user (no chown needed: the sandbox's root is the user)."""
    from test_mcp import Mcp
    state = os.path.join(user["work"], "mcp")
    env = dict(os.environ, AEGIS_SOCKET=os.path.join(state, "run", "aegisd.sock"),
               AEGIS_STATE_DIR=os.path.join(state, "state"), AEGIS_CGROUP_PARENT=DELEGATED)
    m = Mcp(env, binary=os.path.join(user["bin"], "aegis"),
            prefix=("setpriv", f"--reuid={user['uid']}", f"--regid={user['gid']}", "--clear-groups"))
    try:
        m.init()
        s = m.ok("run", argv=["sh", "-c", "id -u; cat /proc/self/uid_map"])
        # sandbox root is the user (ns), or an unprivileged uid of the guest (vm)
        want = str(user["uid"]) if TEST_BACKEND == "ns" else s["stdout"].split()[2]
        assert s["stdout"].split()[:3] == ["0", "0", want] and want != "0", s
        assert m.ok("instance_start", name="rl", argv=["sleep", "600"])["state"] == "running"
        m.ok("file_write", name="rl", path="in/x.txt", content="from mcp\n", create_dirs=True)
        s = m.ok("exec", name="rl", argv=["sh", "-c", "cat /workspace/in/x.txt; echo more >> /workspace/in/x.txt"])
        assert s["stdout"] == "from mcp\n", s
        assert m.ok("file_read", name="rl", path="in/x.txt")["content"] == "from mcp\nmore\n"
        ws = os.path.join(state, "state", "instances", "rl", "workspace", "in", "x.txt")
        assert os.stat(ws).st_uid == user["uid"]
        m.fails("file_read", name="rl", path="../config.json")
        assert m.ok("instance_delete", name="rl")["state"] == "deleted"
        m.close()
    finally:
        as_user(user, os.path.join(user["bin"], "aegis"), "instance", "delete", "rl", env=env)
        as_user(user, os.path.join(user["bin"], "aegis"), "down", env=env)


def test_rootless_image(user):
    """An OCI image as the root, all as an unprivileged user: imported into
    the user's own store (whiteouts and opaque dirs made without privilege),
    run under overlayfs inside the user's namespaces."""
    import ocilayout
    src = os.path.join(user["work"], "img")
    base = ocilayout.base_entries()
    ocilayout.build(src, [base + [("gone.txt", "file", b"x"), ("opq/", "dir"), ("opq/old", "file", b"o")],
                          [(".wh.gone.txt", "file", b""), ("opq/", "dir"), ("opq/.wh..wh..opq", "file", b""),
                           ("opq/new", "file", b"n")]], env=["PATH=/usr/bin", "V=img"], workdir="/app")
    for root, dirs, files in os.walk(src):
        for n in [root] + [os.path.join(root, x) for x in files]:
            os.chown(n, user["uid"], user["gid"])
    env = dict(os.environ, AEGIS_STATE_DIR=os.path.join(user["work"], "imgstate"))
    aegis = os.path.join(user["bin"], "aegis")
    p = as_user(user, aegis, "image", "import", "--quiet", "--name", "rl/img:1", src, env=env)
    assert p.returncode == 0, p
    p = as_user(user, aegis, "run", "--cgroup-parent", DELEGATED, "--image", "rl/img:1", "--", "sh", "-c",
                'echo "$(pwd) $V $(id -u)"; ls /opq; test -e /gone.txt || echo gone; echo w > /x && cat /x', env=env)
    assert p.returncode == 0 and p.stdout == "/app img 0\nnew\ngone\nw\n", p


def test_rootless_image_with_a_workspace_of_another_owner(user):
    """Rootless, an image and a workspace the user does not own (root's,
    open to all): sandbox root still owns the image's files, so aegis
    writes the image's /etc/hosts and the command changes the image and
    writes the workspace. In a vm the EROFS root is built with the
    workspace owner's ids (before, the vm run failed creating
    /etc/hosts)."""
    import ocilayout
    src = os.path.join(user["work"], "img-ws")
    ocilayout.build(src, [ocilayout.base_entries() + [("f.txt", "file", b"image\n")]], env=["PATH=/usr/bin"])
    for root, dirs, files in os.walk(src):
        for n in [root] + [os.path.join(root, x) for x in files]:
            os.chown(n, user["uid"], user["gid"])
    ws = _public_dir("aegis-rootless-rootws-")
    os.chmod(ws, 0o777)
    try:
        env = dict(os.environ, AEGIS_STATE_DIR=os.path.join(user["work"], "imgwsstate"))
        aegis = os.path.join(user["bin"], "aegis")
        p = as_user(user, aegis, "image", "import", "--quiet", "--name", "rl/ws:1", src, env=env)
        assert p.returncode == 0, p
        p = as_user(user, aegis, "run", "--cgroup-parent", DELEGATED, "--image", "rl/ws:1", "--workspace", ws,
                    "--", "sh", "-c", 'id -u; head -1 /etc/hosts; echo x > /f.txt && cat /f.txt; '
                    'echo w > /workspace/w && echo ws', env=env)
        assert p.returncode == 0 and p.stdout == "0\n127.0.0.1\tlocalhost\nx\nws\n", p
        assert open(os.path.join(ws, "w")).read() == "w\n"
    finally:
        shutil.rmtree(ws)
