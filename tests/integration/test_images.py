"""OCI images (issue 8, the store side): `aegis image pull | import | list |
inspect | rm | prune` against Debian's docker-registry on 127.0.0.1
(anonymous, basic and token auth), a stub registry for broken answers, and
archives made by hand. Hostile layers cite HOSTILE.md: A-07 (paths out of
the root), E-21/E-22 (device nodes), E-23 (setuid bits), E-05/E-06 (writes
through symlinks), R-03 (sizes), C-01 (kill -9 mid-operation)."""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time

import pytest

from conftest import AEGIS, run
from images import oci
from images.fixtures import CANARY_NAME, World
from images.registry import PASSWORD, USER, Proxy, Stub


@pytest.fixture(scope="module")
def world():
    work = tempfile.mkdtemp(prefix="aegis-images-")
    w = World(work)
    yield w
    w.stop()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def store(world):
    """A private state dir and the environment to use it; no credentials
    but those a test writes."""
    d = tempfile.mkdtemp(prefix="aegis-store-")
    env = dict(os.environ, AEGIS_STATE_DIR=f"{d}/state", HOME=f"{d}/home",
               AEGIS_INSECURE_REGISTRIES=world.insecure(), AEGIS_IMAGE_LAYER_MAX="1g")
    env.pop("AEGIS_REGISTRY_AUTH", None)
    env.pop("DOCKER_CONFIG", None)
    os.makedirs(env["HOME"])
    yield env
    shutil.rmtree(d, ignore_errors=True)


def image(env, *args, timeout=120):
    return run([AEGIS, "image", *args], env=env, timeout=timeout)


def images_dir(env):
    return os.path.join(env["AEGIS_STATE_DIR"], "images")


def refs(env):
    path = os.path.join(images_dir(env), "refs.json")
    return json.load(open(path))["refs"] if os.path.exists(path) else {}


def stored(env):
    """The store's content: blobs, layers (no temp files, partials or locks)."""
    d = images_dir(env)
    blobs = set(os.listdir(f"{d}/blobs/sha256")) if os.path.isdir(f"{d}/blobs/sha256") else set()
    layers = set(os.listdir(f"{d}/layers")) if os.path.isdir(f"{d}/layers") else set()
    return {b for b in blobs if not b.endswith(".partial")}, layers


def inspect(env, ref):
    r = image(env, "inspect", ref)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def layer_paths(env, ref):
    return [l["path"] for l in inspect(env, ref)["layers"]]


def pull_json(env, ref, *extra):
    r = image(env, "pull", "--json", *extra, ref)
    out = json.loads(r.stdout) if r.stdout.strip() else {}
    return r, out


def assert_fails_cleanly(env, ref, kind, words):
    """A pull that must fail: one line on stderr naming the failure, kind in
    JSON, exit 125, and nothing stored: no ref, blob or layer appears."""
    before = stored(env)
    r, out = pull_json(env, ref)
    assert r.returncode == 125, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aegis: "), r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert out["error"]["kind"] == kind, out
    assert not any(ref.split("/", 1)[1].split(":")[0] in k for k in refs(env)), refs(env)
    assert stored(env) == before, "something was half-stored"
    return lines[0]


# --- pulling ---------------------------------------------------------------

def test_pull_multilayer_whiteouts_and_opaque_dirs(world, store):
    ref = f"{world.anon.host}/test/multi:1"
    r, out = pull_json(store, ref)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", "--json is quiet"
    assert out["ref"] == ref and out["digest"].startswith("sha256:") and out["layers"] == 3
    assert refs(store)[ref]["digest"] == out["digest"]
    info = inspect(store, ref)
    assert info["digest"] == out["digest"]
    assert "GREETING=hello" in info["config"]["config"]["Env"]
    l1, l2, l3 = layer_paths(store, ref)
    with open(f"{l1}/etc/motd") as f:
        assert f.read() == "layer one\n"
    assert os.readlink(f"{l1}/bin/motd-link") == "../etc/motd"
    st = os.lstat(f"{l2}/etc/gone")
    assert st.st_mode & 0o170000 == 0o020000 and st.st_rdev == 0, "whiteout is a 0:0 char device"
    assert not os.path.exists(f"{l2}/etc/.wh.gone")
    assert os.getxattr(f"{l3}/data/old", "user.overlay.opaque") == b"y"
    assert os.listdir(f"{l3}/data/old") == ["c"]


def test_layers_assemble_under_overlayfs(world, store):
    """The layers as the engine mounts them (overlayfs, userxattr): the
    whiteout hides the file, the opaque dir hides the lower one's entries."""
    ref = f"{world.anon.host}/test/multi:1"
    assert image(store, "pull", "--quiet", ref).returncode == 0
    lower = ":".join(reversed(layer_paths(store, ref)))
    mnt = os.path.join(os.path.dirname(store["AEGIS_STATE_DIR"]), "mnt")
    os.makedirs(mnt)
    script = (f"mount -t overlay overlay -o lowerdir={lower},userxattr {mnt} && cat {mnt}/etc/motd && "
              f"echo --- && ls -A {mnt}/etc && echo --- && ls -A {mnt}/data/old")
    r = run(["unshare", "-m", "sh", "-c", script])
    assert r.returncode == 0, r.stderr
    motd, etc, old = r.stdout.split("---\n")
    assert motd == "layer two\n"
    assert etc.split() == ["motd"], "the whiteout hides etc/gone"
    assert old.split() == ["c"], "the opaque dir hides a and b of the lower layer"


def test_pull_index_selects_linux_amd64(world, store):
    ref = f"{world.anon.host}/test/multiarch:1"
    idx, amd, arm = world.digests["multiarch"]
    r, out = pull_json(store, ref)
    assert r.returncode == 0, r.stderr
    assert out["index"] == idx and out["digest"] == amd
    (layer,) = layer_paths(store, ref)
    with open(f"{layer}/arch") as f:
        assert f.read() == "amd64\n"
    # pinned by the index digest: resolves to the same platform manifest
    info = inspect(store, f"{world.anon.host}/test/multiarch@{idx}")
    assert info["digest"] == amd


def test_pull_zstd_and_uncompressed_layers(world, store):
    ref = f"{world.anon.host}/test/zstd:1"
    r, out = pull_json(store, ref)
    assert r.returncode == 0, r.stderr
    types = [l["media_type"] for l in inspect(store, ref)["layers"]]
    assert types == [oci.LAYER_TYPES["zstd"], oci.LAYER_TYPES[""]]
    zl, pl = layer_paths(store, ref)
    assert open(f"{zl}/z/data").read() == "zstd layer\n" * 100
    assert open(f"{pl}/plain").read() == "uncompressed layer\n"


def test_pull_by_digest_and_again_is_a_no_op(world, store):
    digest = world.digests["zstd"][0]
    ref = f"{world.anon.host}/test/zstd@{digest}"
    r, out = pull_json(store, ref)
    assert r.returncode == 0 and out["digest"] == digest, r.stderr
    r, out = pull_json(store, ref)
    assert r.returncode == 0 and out["downloaded_bytes"] == 0


def test_plain_http_only_when_marked_insecure(world, store):
    env = dict(store, AEGIS_INSECURE_REGISTRIES="")
    r = image(env, "pull", f"{world.anon.host}/test/zstd:1")
    assert r.returncode == 125 and "insecure" in r.stderr, r.stderr
    assert image(env, "pull", "--insecure", "--quiet", f"{world.anon.host}/test/zstd:1").returncode == 0


def test_manifest_404(world, store):
    line = assert_fails_cleanly(store, f"{world.anon.host}/test/nothere:1", "not_found",
                                ["not found", "MANIFEST_UNKNOWN"])
    assert "404" in line


# --- auth --------------------------------------------------------------------

def write_auth(env, host, user=USER, password=PASSWORD, where="aegis"):
    import base64
    doc = {"auths": {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}
    path = (f"{env['HOME']}/.config/aegis/auth.json" if where == "aegis"
            else f"{env['HOME']}/.docker/config.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f)


@pytest.mark.parametrize("which", ["token", "basic"])
def test_pull_with_auth(world, store, which):
    reg = getattr(world, which)
    ref = f"{reg.host}/private/small:1"
    assert_fails_cleanly(store, ref, "auth", ["auth failure", "credentials"])
    write_auth(store, reg.host, password="wrong")
    assert_fails_cleanly(store, ref, "auth", ["auth failure"])
    write_auth(store, reg.host, where="docker")   # docker's file is read too
    os.unlink(f"{store['HOME']}/.config/aegis/auth.json")
    r, out = pull_json(store, ref)
    assert r.returncode == 0, r.stderr
    assert out["digest"] == world.digests["small"][0]


def test_token_flow_sends_credentials_to_the_realm_only(world, store):
    write_auth(store, world.token.host)
    before = len(world.tokens.requests)
    assert image(store, "pull", "--quiet", f"{world.token.host}/private/small:1").returncode == 0
    asked = world.tokens.requests[before:]
    assert asked and all("scope=repository%3Aprivate%2Fsmall%3Apull" in p for p, _ in asked)
    assert all(a.startswith("Basic ") for _, a in asked)
