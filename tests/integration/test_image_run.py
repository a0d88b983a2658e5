"""OCI images as sandbox roots (issue 8, the engine's side): the layers
under a per-run writable layer, whiteouts and opaque directories honoured,
the image's Env and WorkingDir as defaults, nothing written to the store
or through an image's symlinks to the host, the disk limit on the root,
the digest on record, instances pinned to theirs, replays too, rootless.
Images are built here by hand (ocilayout.py) and imported: no network."""
import hashlib
import json
import os
import subprocess
import time

import pytest

import ocilayout
from conftest import AEGIS, PROBE, TEST_BACKEND, run

IMAGE = [AEGIS, "image"]

ENV = ["PATH=/usr/bin:/bin", "IMGVAR=fromimage"]
TOP = [("top.txt", "file", b"top\n"), ("gone.txt", "file", b"x"), (".wh.gone.txt", "file", b""),
       ("opq/", "dir"), ("opq/.wh..wh..opq", "file", b""), ("opq/new", "file", b"new\n")]
# (a whiteout for a file of the same layer is not how images say it: the
# base has gone.txt, the top layer removes it)
BASE_EXTRA = [("gone.txt", "file", b"in the base\n"), ("base.txt", "file", b"base\n"), ("opq/", "dir"),
              ("opq/old", "file", b"old\n")]
HOSTILE = [("etc", "symlink", "/etc"), ("proc", "symlink", "/etc"), ("workspace", "symlink", "/root"),
           ("tmp", "symlink", "/var/tmp"), ("run", "symlink", "/etc"), ("srv", "symlink", "/etc")]
# a real /run of its own mode and time whose secrets/ is a link to the host's /etc
HOSTILE_BELOW = [("run/", "dir", 0o750), ("run/keep", "file", b"kept\n"), ("run/secrets", "symlink", "/etc")]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A state dir with four imported images: test/img:1 (two layers),
    test/img:2 (another base file), test/hostile:1 and test/hostile:2
    (symlinks at the host)."""
    d = tmp_path_factory.mktemp("images")
    env = dict(os.environ, AEGIS_STATE_DIR=str(d / "state"), AEGIS_SOCKET=str(d / "run" / "aegisd.sock"))
    base = ocilayout.base_entries()
    top = [e for e in TOP if e[0] != "gone.txt"]
    ocilayout.build(str(d / "img1"), [base + BASE_EXTRA, top], env=ENV, workdir="/srv/app")
    ocilayout.build(str(d / "img2"), [base + [("base.txt", "file", b"second image\n")]], env=ENV)
    ocilayout.build(str(d / "hostile"), [base, HOSTILE], env=ENV, workdir="/srv")
    ocilayout.build(str(d / "hostile2"), [base, HOSTILE_BELOW], env=ENV)
    for src, ref in [("img1", "test/img:1"), ("img2", "test/img:2"), ("hostile", "test/hostile:1"),
                     ("hostile2", "test/hostile:2")]:
        p = run([*IMAGE, "import", "--quiet", "--name", ref, str(d / src)], env=env)
        assert p.returncode == 0, p
    return d, env


def digest_of(env, ref):
    p = run([*IMAGE, "inspect", ref], env=env)
    assert p.returncode == 0, p
    return json.loads(p.stdout)["digest"]


def store_digest(state):
    """Every file of the store's unpacked layers, hashed: nothing a run does
    may change them."""
    h = hashlib.sha256()
    top = os.path.join(state, "images", "layers")
    for root, dirs, files in sorted(os.walk(top)):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            h.update(p.encode())
            if os.path.isfile(p) and not os.path.islink(p):
                h.update(open(p, "rb").read())
    return h.hexdigest()


def test_layers_whiteouts_env_workdir(images, tmp_path):
    d, env = images
    arts = tmp_path / "arts"
    p = run([AEGIS, "run", "--image", "test/img:1", "--artifacts", str(arts), "--audit", str(tmp_path / "a.jsonl"),
             "--", "sh", "-c", 'echo "$(pwd) $IMGVAR"; cat /top.txt /base.txt; ls /opq; '
                               'test -e /gone.txt || echo gone; cat /etc/hostname; id -u'], env=env)
    assert p.returncode == 0, p
    # the top layer's whiteout hides the base's file; its opaque dir hides
    # the base's contents; WorkingDir made though the image lacks it
    assert p.stdout == "/srv/app fromimage\ntop\nbase\nnew\ngone\naegis\n0\n", p
    digest = digest_of(env, "test/img:1")
    result = json.load(open(arts / "result.json"))
    assert (result["image"], result["image_digest"]) == ("docker.io/test/img:1", digest), result
    start = [json.loads(line) for line in open(tmp_path / "a.jsonl")][0]
    assert (start["image"], start["image_digest"]) == ("docker.io/test/img:1", digest), start


def test_flags_win_over_the_image(images):
    _, env = images
    p = run([AEGIS, "run", "--image", "test/img:1", "--env", "IMGVAR=mine", "--cwd", "/tmp", "--",
             "sh", "-c", 'echo "$(pwd) $IMGVAR $PATH"'], env=env)
    assert p.stdout == "/tmp mine /usr/bin:/bin\n", p


def test_writes_stay_in_the_run(images):
    """The root is writable, in the run's own layer: the next run, and the
    store, see none of it."""
    d, env = images
    before = store_digest(env["AEGIS_STATE_DIR"])
    p = run([AEGIS, "run", "--image", "test/img:1", "--", "sh", "-c",
             "echo changed > /base.txt && rm /top.txt && mkdir -p /usr/local/x && echo n > /new.txt "
             "&& cat /base.txt && ls /top.txt 2>&1 | wc -l"], env=env)
    assert p.returncode == 0 and p.stdout == "changed\n1\n", p
    p = run([AEGIS, "run", "--image", "test/img:1", "--", "sh", "-c",
             "cat /base.txt /top.txt; ls /new.txt 2>/dev/null | wc -l"], env=env)
    assert p.stdout == "base\ntop\n0\n", p
    assert store_digest(env["AEGIS_STATE_DIR"]) == before


def test_image_names_removed_and_made_again(images):
    """What package managers do to an image's files: a directory that holds
    image entries removed (its whiteouts in the run's layer) and made again
    (opaque: none of the image's entries come back), a file of the image
    removed and a directory made in its place. The positive control: the
    same listing before shows the image's entry. The next run sees the image
    unchanged, and the store is never written."""
    _, env = images
    before = store_digest(env["AEGIS_STATE_DIR"])
    p = run([AEGIS, "run", "--image", "test/img:1", "--", "sh", "-c",
             "ls -A /opq; rm -r /opq && mkdir /opq && echo made && ls -A /opq; "
             "rm /top.txt; mkdir /top.txt && ls -A /top.txt && test -d /top.txt && echo dir; "
             "rm /base.txt; mkdir /base.txt && touch /base.txt/in && ls -A /base.txt"], env=env)
    assert p.returncode == 0 and p.stdout == "new\nmade\ndir\nin\n", p
    p = run([AEGIS, "run", "--image", "test/img:1", "--", "sh", "-c", "ls -A /opq; cat /top.txt /base.txt"], env=env)
    assert p.returncode == 0 and p.stdout == "new\ntop\nbase\n", p
    assert store_digest(env["AEGIS_STATE_DIR"]) == before


def test_image_directory_renamed(images):
    """rename(2) of a directory from the image is the overlay's EXDEV (no
    redirect_dir, on the host as in a guest), so mv copies it and removes
    the original, which needs whiteouts; a directory made in the run renames
    in place. The probe reports the syscall's own answer."""
    _, env = images
    probe = "/workspace/" + os.path.basename(PROBE)
    p = run([AEGIS, "run", "--image", "test/img:1", "--workspace-ro", os.path.dirname(PROBE), "--",
             "sh", "-c", f"{probe} rename /opq /opq2; mkdir /mine && touch /mine/x && {probe} rename /mine /mine2 "
             "&& ls /mine2; mv /opq /moved && ls -A /moved && test ! -e /opq && echo opq-gone"], env=env)
    assert p.returncode == 0, p
    assert p.stdout == ("rename: blocked errno=EXDEV (Invalid cross-device link)\nrename: ok\nx\n"
                        "new\nopq-gone\n"), p


def test_root_is_within_the_disk_limit(images):
    _, env = images
    p = run([AEGIS, "run", "--image", "test/img:1", "--disk", "8m", "--json", "--",
             "sh", "-c", "dd if=/dev/zero of=/big bs=1M count=32 2>&1; echo done"], env=env)
    out = json.loads(p.stdout)
    # the root filled up at 8m (no disk_full on an unbounded root); the
    # engine's watch may stop the run before dd's own ENOSPC line is out
    # (a guest under TCG is slow enough to lose that race)
    assert out["limit"] == "disk_full", json.dumps(out)
    assert "No space left" in out["stdout"] or (out["stdout"] == "" and out["exit_code"] == 137), json.dumps(out)


def test_hostile_symlinks_never_reach_the_host(images):
    """An image whose /etc, /proc, /tmp, /run, /workspace and WorkingDir are
    symlinks to host paths (I-03): aegis writes /etc/hosts, mounts /proc,
    /tmp, /workspace and /run/secrets there before it enters the root; each
    is made a real directory of the run's layer instead, never followed.
    Host files keep their content; the links are really in the layer."""
    d, env = images
    watched = ["/etc/hosts", "/etc/hostname", "/etc/shadow"]
    before = {f: hashlib.sha256(open(f, "rb").read()).hexdigest() for f in watched}
    etc_before = set(os.listdir("/etc"))
    assert run([AEGIS, "secret", "set", "HK"], env=env, input="hostile-secret").returncode == 0
    p = run([AEGIS, "run", "--image", "test/hostile:1", "--secret", "HK:file", "--", "sh", "-c",
             "pwd; ls /etc; cat /etc/hostname; ls /run/secrets; touch /tmp/x /workspace/y && echo ok; "
             "head -1 /proc/self/status"], env=env)
    assert p.returncode == 0, p
    assert p.stdout.split("\n")[:7] == ["/etc", "hostname", "hosts", "aegis", "HK", "ok", "Name:\thead"], p
    assert {f: hashlib.sha256(open(f, "rb").read()).hexdigest() for f in watched} == before
    assert set(os.listdir("/etc")) == etc_before
    assert not os.path.exists("/var/tmp/x") and not os.path.exists("/root/y")
    # the probe is real: the store's layer holds links that lead to the host
    layers = os.path.join(env["AEGIS_STATE_DIR"], "images", "layers")
    links = [os.readlink(os.path.join(layers, l, "etc")) for l in os.listdir(layers)
             if os.path.islink(os.path.join(layers, l, "etc"))]
    assert links == ["/etc"], links


def test_hostile_symlink_below_a_real_directory(images):
    """/run is the image's own directory and /run/secrets a link to the
    host's /etc: the secrets' mount point is made a directory of the run's
    layer, and /run keeps what the image gives it (its entries, mode and
    time, as a copy-up would)."""
    _, env = images
    etc_before = set(os.listdir("/etc"))
    assert run([AEGIS, "secret", "set", "HK2"], env=env, input="below-secret").returncode == 0
    p = run([AEGIS, "run", "--image", "test/hostile:2", "--secret", "HK2:file", "--", "sh", "-c",
             "stat -c '%a %Y' /run; cat /run/keep; ls /run/secrets; readlink /run/secrets || echo real; "
             "wc -c < /run/secrets/HK2"], env=env)
    assert p.returncode == 0, p
    assert p.stdout.split("\n") == ["750 1700000000", "kept", "HK2", "real", "12", ""], p
    assert set(os.listdir("/etc")) == etc_before and "HK2" not in etc_before


def test_image_with_a_workspace_of_another_owner(images, tmp_path):
    """A workspace of another owner makes sandbox root that owner. The
    run's layer is still sandbox root's: the root directory (aegis makes its
    mount points there, the command adds names) and the directories made
    over the image's links (/etc, /run; in a guest the guest's root makes
    them), and so are the image's own (/usr/bin: the layers are shown as
    the owner's, in a guest too). What it writes in the workspace is the
    owner's on the host."""
    _, env = images
    ws = tmp_path / "ws"
    ws.mkdir()
    os.chown(ws, 4321, 4321)
    assert run([AEGIS, "secret", "set", "HK3"], env=env, input="owner-secret").returncode == 0
    p = run([AEGIS, "run", "--image", "test/hostile:1", "--secret", "HK3:file", "--workspace", str(ws), "--",
             "sh", "-c", "stat -c '%u %g' / /etc /run /usr/bin; mkdir /new && touch /workspace/f && echo ok"],
            env=env)
    assert p.returncode == 0 and p.stdout == "0 0\n0 0\n0 0\n0 0\nok\n", p
    st = os.stat(ws / "f")
    assert (st.st_uid, st.st_gid) == (4321, 4321)


def test_image_etc_with_a_workspace_of_a_user(images, tmp_path):
    """An image with its own /etc (the store's, root's on the host) and a
    workspace of uid 1000: sandbox root owns the image's files as seen from
    inside (/etc, a file of it, /usr/bin, the root), as without a
    workspace, so aegis writes its /etc/hosts and /etc/hostname there and
    the command changes the image anywhere (copy-up) as root: a new file
    in /etc, a line added to /etc/hosts and to an image file, a directory
    tree made under /usr. The workspace's files are shown as root's and
    what the command makes there is 1000's on the host. The next run sees
    the image unchanged, and the store is never written."""
    _, env = images
    before = store_digest(env["AEGIS_STATE_DIR"])
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "mine").write_text("mine\n")
    for p in (ws, ws / "mine"):
        os.chown(p, 1000, 1000)
    p = run([AEGIS, "run", "--image", "test/img:1", "--hostname", "ownerbox", "--workspace", str(ws), "--",
             "sh", "-c", "stat -c '%u %g' / /etc /etc/passwd /usr/bin /workspace /workspace/mine; "
                         "cat /etc/hostname; echo x > /etc/newfile && echo y >> /etc/hosts "
                         "&& echo z >> /etc/passwd && mkdir -p /usr/local/bin && touch /usr/local/bin/t "
                         "&& echo w > /workspace/f && cat /etc/newfile /etc/hosts /etc/passwd && id -u"], env=env)
    assert p.returncode == 0, p
    assert p.stdout == "0 0\n" * 6 + ("ownerbox\nx\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                                      "127.0.1.1\townerbox\ny\nroot:x:0:0:root:/root:/bin/sh\nz\n0\n"), p
    st = os.stat(ws / "f")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    p = run([AEGIS, "run", "--image", "test/img:1", "--", "sh", "-c",
             "ls /etc/newfile /usr/local 2>/dev/null | wc -l; cat /etc/passwd"], env=env)
    assert p.returncode == 0 and p.stdout == "0\nroot:x:0:0:root:/root:/bin/sh\n", p
    assert store_digest(env["AEGIS_STATE_DIR"]) == before


def test_instance_with_an_image_and_a_workspace_of_a_user(images, tmp_path):
    """The run above as an instance: its command and an exec see the
    image's files as sandbox root's and the workspace (uid 1000's on the
    host) as root's, write the image's /etc (copy-up), and what they make
    in the workspace is 1000's on the host; the store is never written."""
    d, env = images
    env = dict(env, AEGIS_SOCKET=str(d / "run3" / "aegisd.sock"))
    before = store_digest(env["AEGIS_STATE_DIR"])
    ws = tmp_path / "ws"
    ws.mkdir()
    os.chown(ws, 1000, 1000)
    try:
        p = run([AEGIS, "instance", "start", "--name", "iw", "--image", "test/img:1", "--workspace", str(ws), "--",
                 "sh", "-c", "echo x >> /etc/hosts && echo cmd > /workspace/by-cmd && exec sleep 600"], env=env)
        assert p.returncode == 0, p
        deadline = time.monotonic() + 60
        while not (ws / "by-cmd").exists():
            info = json.loads(run([AEGIS, "instance", "info", "iw"], env=env).stdout)
            assert time.monotonic() < deadline and info["state"] in ("starting", "running"), info
            time.sleep(0.1)
        assert json.loads(run([AEGIS, "instance", "info", "iw"], env=env).stdout)["backend"] == TEST_BACKEND
        p = run([AEGIS, "exec", "iw", "--", "sh", "-c",
                 "stat -c '%u %g' /etc/passwd /workspace /workspace/by-cmd; "
                 "case \"$(cat /etc/hosts)\" in *'\nx') echo x;; esac; "  # the command's line is the last
                 "echo z >> /etc/passwd && echo exec > /workspace/by-exec && id -u"], env=env)
        assert p.returncode == 0 and p.stdout == "0 0\n" * 3 + "x\n0\n", p
        for f in ("by-cmd", "by-exec"):
            st = os.stat(ws / f)
            assert (st.st_uid, st.st_gid) == (1000, 1000), f
    finally:
        run([AEGIS, "instance", "delete", "iw"], env=env)
        run([AEGIS, "down"], env=env)
    assert store_digest(env["AEGIS_STATE_DIR"]) == before


def test_missing_image_is_one_clear_error(images):
    _, env = images
    p = run([AEGIS, "run", "--image", "registry.invalid/none:1", "--", "true"], env=env)
    assert p.returncode == 125 and p.stderr.count("\n") == 1 and "registry.invalid" in p.stderr, p
    p = run([AEGIS, "run", "--json", "--image", "registry.invalid/none:1", "--", "true"], env=env)
    assert p.returncode == 125 and json.loads(p.stdout)["error"]["message"], p
    p = run([AEGIS, "run", "--image", "Bad//Ref", "--", "true"], env=env)
    assert p.returncode == 125 and p.stderr.count("\n") == 1, p


def test_replay_pins_the_digest(images, tmp_path):
    """A replay runs the image the run had, even after its tag moved."""
    d, env = images
    arts = tmp_path / "arts"
    assert run([*IMAGE, "import", "--quiet", "--name", "test/moving:1", str(d / "img1")],
               env=env).returncode == 0
    p = run([AEGIS, "run", "--image", "test/moving:1", "--artifacts", str(arts), "--", "cat", "/base.txt"], env=env)
    assert p.stdout == "base\n", p
    assert run([*IMAGE, "import", "--quiet", "--name", "test/moving:1", str(d / "img2")],
               env=env).returncode == 0
    p = run([AEGIS, "run", "--image", "test/moving:1", "--", "cat", "/base.txt"], env=env)
    assert p.stdout == "second image\n", p
    p = run([AEGIS, "replay", str(arts)], env=env)
    assert p.returncode == 0 and p.stdout == "base\n", p


def test_instance_is_pinned_to_its_image(images):
    d, env = images
    env = dict(env, AEGIS_SOCKET=str(d / "run2" / "aegisd.sock"))
    try:
        assert run([*IMAGE, "import", "--quiet", "--name", "test/inst:1", str(d / "img1")],
                   env=env).returncode == 0
        p = run([AEGIS, "instance", "start", "--name", "im", "--image", "test/inst:1", "--", "sleep", "600"], env=env)
        assert p.returncode == 0, p
        deadline = time.monotonic() + 10
        while (info := json.loads(run([AEGIS, "instance", "info", "im"], env=env).stdout))["state"] != "running":
            assert time.monotonic() < deadline, info
            time.sleep(0.05)
        assert (info["image"], info["image_digest"]) == ("docker.io/test/inst:1", digest_of(env, "test/inst:1"))
        time.sleep(0.2)
        p = run([AEGIS, "exec", "im", "--", "sh", "-c", 'echo "$(pwd) $IMGVAR"; cat /base.txt'], env=env)
        assert p.stdout == "/srv/app fromimage\nbase\n", p
        # the tag moves; a restart still gets the image the instance was made with
        assert run([*IMAGE, "import", "--quiet", "--name", "test/inst:1", str(d / "img2")],
                   env=env).returncode == 0
        assert run([AEGIS, "instance", "disable", "im"], env=env).returncode == 0
        assert run([AEGIS, "instance", "start", "--name", "im"], env=env).returncode == 0
        deadline = time.monotonic() + 10
        while json.loads(run([AEGIS, "instance", "info", "im"], env=env).stdout)["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)
        assert run([AEGIS, "exec", "im", "--", "cat", "/base.txt"], env=env).stdout == "base\n"
        # an image the store does not have: the API says so, nothing is made
        p = run([AEGIS, "instance", "start", "--name", "im2", "--image", "registry.invalid/x:1", "--", "true"], env=env)
        assert p.returncode == 125, p
        assert not os.path.exists(os.path.join(env["AEGIS_STATE_DIR"], "instances", "im2"))
    finally:
        run([AEGIS, "instance", "delete", "im"], env=env)
        run([AEGIS, "down"], env=env)
