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


@pytest.mark.parametrize("args, needle", [
    ((), "missing subcommand"),
    (("frob",), "unknown subcommand 'frob'"),
    (("pull",), "pull: missing REF"),
    (("pull", "a", "b"), "unexpected argument 'b'"),
    (("list", "--frob"), "unknown option '--frob'"),
    (("pull", "Bad/Name"), "lowercase"),
    (("inspect", "x y"), "space"),
])
def test_usage_errors_are_125_one_line(store, args, needle):
    r = image(store, *args)
    assert r.returncode == 125 and r.stdout == "", r
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("aegis: ") and needle in r.stderr, r.stderr


def test_help_is_0(store):
    r = image(store, "--help")
    assert r.returncode == 0 and "aegis image pull" in r.stdout and "prune" in r.stdout


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
    # pinned by the index digest: resolves to the same platform manifest,
    # also after a prune (an instance keeps the image)
    inst = os.path.join(store["AEGIS_STATE_DIR"], "instances", "i")
    os.makedirs(inst)
    json.dump({"image": ref}, open(f"{inst}/config.json", "w"))
    assert image(store, "prune").returncode == 0
    info = inspect(store, f"{world.anon.host}/test/multiarch@{idx}")
    assert info["digest"] == amd and info["index"] is None


def test_pull_index_without_this_platform(world, store):
    assert_fails_cleanly(store, f"{world.anon.host}/test/armonly:1", "not_found",
                         ["no image for linux/amd64", "linux/arm64/v8"])


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


def test_progress_on_a_terminal_only(world, store):
    ref = f"{world.anon.host}/test/big:1"
    r = run(["script", "-qec", f"{AEGIS} image pull {ref}", "/dev/null"], env=store)
    assert r.returncode == 0, r.stdout
    for layer in json.loads(open(f"{world.hand.path}/blobs/sha256/{world.digests['big'][0][7:]}").read())["layers"]:
        assert f"{layer['digest'][7:19]}  done" in r.stdout, r.stdout
    assert "MiB / 3.0 MiB" in r.stdout and f"pulled {ref}" in r.stdout
    r = image(store, "pull", ref)     # not a terminal: one line
    assert r.returncode == 0 and r.stderr == f"pulled {ref} ({world.digests['big'][0]})\n", r.stderr
    r = run(["script", "-qec", f"{AEGIS} image pull --quiet {ref}", "/dev/null"], env=store)
    assert r.returncode == 0 and r.stdout == "", r.stdout


def test_plain_http_only_when_marked_insecure(world, store):
    env = dict(store, AEGIS_INSECURE_REGISTRIES="")
    r = image(env, "pull", f"{world.anon.host}/test/zstd:1")
    assert r.returncode == 125 and "insecure" in r.stderr, r.stderr
    assert image(env, "pull", "--insecure", "--quiet", f"{world.anon.host}/test/zstd:1").returncode == 0


def test_https_registry_verified_against_its_ca(world, store):
    """HTTPS by default, certificates verified: a self-signed registry fails
    until its CA is given (AEGIS_REGISTRY_CA)."""
    from images.registry import Registry, make_tls_cert
    tls = make_tls_cert(world.work)
    reg = Registry(f"{world.work}/tls", tls=tls)
    try:
        reg.push(f"oci:{world.hand.path}:small", "test/small:1")
        ref = f"{reg.host}/test/small:1"
        r, out = pull_json(store, ref)
        assert r.returncode == 125 and out["error"]["kind"] == "network", r.stderr
        assert "certificate" in r.stderr, r.stderr
        r, out = pull_json(dict(store, AEGIS_REGISTRY_CA=tls[0]), ref)
        assert r.returncode == 0 and out["digest"] == world.digests["small"][0], r.stderr
    finally:
        reg.stop()


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


# --- broken registries: each failure clear, nothing half-stored ---------------

def broken_image(stub, tag, layer_type=None, served_type=oci.OCI_MANIFEST, layer_how=None,
                 bad_layer=False, bad_config=False):
    """A valid image served by the stub, then spoiled as asked."""
    tar = oci.tar_bytes([("f", "file", b"some content\n" * 4000)])
    blob = oci.compress(tar, "gzip")
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [oci.sha(tar)]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
                           "config": {"mediaType": oci.OCI_CONFIG, "digest": oci.sha(cfg), "size": len(cfg)},
                           "layers": [{"mediaType": layer_type or oci.LAYER_TYPES["gzip"],
                                       "digest": oci.sha(blob), "size": len(blob)}]}).encode()
    if bad_layer:
        blob = blob[:-8] + b"\0" * 8
    cfg_digest, blob_digest = oci.sha(cfg), oci.sha(oci.compress(tar, "gzip"))
    if bad_config:
        cfg = cfg.replace(b"amd64", b"arm64")   # served under the digest of the original
    stub.serve_image("test/broken", tag, manifest, served_type,
                     {cfg_digest: cfg, blob_digest: (blob, layer_how)})
    return blob_digest


@pytest.fixture(scope="module")
def stub():
    s = Stub()
    yield s
    s.stop()


@pytest.fixture
def stub_store(store, stub):
    return dict(store, AEGIS_INSECURE_REGISTRIES=store["AEGIS_INSECURE_REGISTRIES"] + "," + stub.host)


def test_layer_digest_mismatch(stub, stub_store):
    broken_image(stub, "digest", bad_layer=True)
    assert_fails_cleanly(stub_store, f"{stub.host}/test/broken:digest", "digest_mismatch",
                         ["digest mismatch", "blob sha256:"])
    assert not [f for f in os.listdir(f"{images_dir(stub_store)}/blobs/sha256") if f.endswith(".partial")], \
        "a corrupt download is not kept for resuming"


def test_config_digest_mismatch(stub, stub_store):
    broken_image(stub, "config", bad_config=True)
    assert_fails_cleanly(stub_store, f"{stub.host}/test/broken:config", "digest_mismatch",
                         ["digest mismatch", "config"])


def test_truncated_blob(stub, stub_store):
    broken_image(stub, "trunc", layer_how="truncate")
    line = assert_fails_cleanly(stub_store, f"{stub.host}/test/broken:trunc", "truncated",
                                ["truncated blob", "after 3 tries"])
    assert "got" in line


def test_blob_longer_than_declared(stub, stub_store):
    broken_image(stub, "endless", layer_how="endless")
    assert_fails_cleanly(stub_store, f"{stub.host}/test/broken:endless", "too_large",
                         ["larger than its declared"])


def test_wrong_media_types(stub, stub_store):
    broken_image(stub, "html", served_type="text/html")
    assert_fails_cleanly(stub_store, f"{stub.host}/test/broken:html", "media_type",
                         ["wrong media type", "text/html"])
    broken_image(stub, "bzip", layer_type="application/vnd.oci.image.layer.v1.tar+bzip2")
    assert_fails_cleanly(stub_store, f"{stub.host}/test/broken:bzip", "media_type",
                         ["wrong media type", "bzip2"])


def test_layer_declaring_more_than_the_limit(stub, stub_store):
    """R-03: a manifest declaring a 2 GiB layer (the limit is 1g here) fails
    before anything is downloaded."""
    digest = broken_image(stub, "declared")
    path = "/v2/test/broken/manifests/declared"
    status, headers, body, how = stub.routes[path]
    stub.routes[path] = (status, headers, body.replace(b'"size": %d}]' % json.loads(body)["layers"][0]["size"],
                                                       b'"size": %d}]' % (2 << 30)), how)
    env = dict(stub_store)
    assert_fails_cleanly(env, f"{stub.host}/test/broken:declared", "too_large", ["over the limit"])
    assert not os.path.exists(f"{images_dir(env)}/blobs/sha256/{digest[7:]}.partial")


def test_blob_404(stub, stub_store):
    digest = broken_image(stub, "noblob")
    del stub.routes[f"/v2/test/broken/blobs/{digest}"]
    assert_fails_cleanly(stub_store, f"{stub.host}/test/broken:noblob", "not_found",
                         ["BLOB_UNKNOWN", "404"])


# --- interruption and concurrency -----------------------------------------------

def partial_size(env):
    d = f"{images_dir(env)}/blobs/sha256"
    sizes = [os.path.getsize(f"{d}/{f}") for f in os.listdir(d) if f.endswith(".partial")] \
        if os.path.isdir(d) else []
    return max(sizes, default=0)


def test_kill_9_mid_pull_then_resume(world, store):
    """C-01: kill -9 in the middle of a download leaves no ref and a partial
    blob; the next pull asks for the rest only (HTTP Range) and completes."""
    proxy = Proxy(world.anon.port, rate=512 << 10)
    env = dict(store, AEGIS_INSECURE_REGISTRIES=world.insecure(proxy.host))
    ref = f"{proxy.host}/test/big:1"
    try:
        p = subprocess.Popen([AEGIS, "image", "pull", "--quiet", ref], env=env)
        end = time.time() + 30
        while partial_size(env) < (600 << 10) and time.time() < end and p.poll() is None:
            time.sleep(0.05)
        assert p.poll() is None, "the pull ended before it could be interrupted"
        p.send_signal(signal.SIGKILL)
        p.wait()
        got = partial_size(env)
        assert got >= 600 << 10
        assert ref not in refs(env)
        proxy.rate = None
        r, out = pull_json(env, ref)
        assert r.returncode == 0, r.stderr
        ranges = [rg for _, path, rg in proxy.requests if rg]
        assert any(rg.startswith("bytes=") and int(rg[6:].rstrip("-")) >= 600 << 10 for rg in ranges), ranges
        total = sum(l["size"] for l in inspect(env, ref)["layers"])
        assert out["downloaded_bytes"] <= total - (600 << 10)
        assert not [f for f in os.listdir(f"{images_dir(env)}/blobs/sha256") if f.endswith(".partial")]
    finally:
        proxy.stop()


def test_kill_9_mid_unpack(world, store):
    """C-01: kill -9 while a layer is being unpacked: its workers die with
    it, no layer or ref appears, and the next pull completes cleanly."""
    ref = f"{world.anon.host}/test/many:1"
    tmp = f"{images_dir(store)}/tmp"
    p = subprocess.Popen([AEGIS, "image", "pull", "--quiet", ref], env=store)
    end = time.time() + 60
    while time.time() < end and p.poll() is None and not (
            os.path.isdir(tmp) and any(n.startswith("layer-") for n in os.listdir(tmp))):
        time.sleep(0.002)
    assert p.poll() is None, "the pull ended before it could be interrupted"
    time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(0.2)
    leftover = [n for n in os.listdir(tmp) if n.startswith("layer-")]
    assert leftover, "killed mid-unpack"
    size = sum(len(fs) for _, _, fs in os.walk(f"{tmp}/{leftover[0]}"))
    time.sleep(0.3)
    assert sum(len(fs) for _, _, fs in os.walk(f"{tmp}/{leftover[0]}")) == size, "no orphan kept unpacking"
    assert ref not in refs(store) and stored(store)[1] == set()
    r, out = pull_json(store, ref)
    assert r.returncode == 0, r.stderr
    assert os.listdir(tmp) == []
    (layer,) = layer_paths(store, ref)
    assert len(os.listdir(f"{layer}/d")) == 30000


def test_leftovers_of_a_killed_unpack_are_cleaned(world, store):
    """What a kill -9 during unpacking leaves (a temp layer dir) is removed
    by the next pull of that layer, and never taken for the layer."""
    ref = f"{world.anon.host}/test/zstd:1"
    digest = world.digests["zstd"][0]
    diff = json.loads(world.digests["zstd"][1])  # manifest
    cfg = world.digests["zstd"][2]
    hexes = [d[7:] for d in cfg["rootfs"]["diff_ids"]]
    tmp = f"{images_dir(store)}/tmp"
    assert image(store, "prune").returncode == 0   # makes the store
    os.makedirs(f"{tmp}/layer-{hexes[0]}/half/written", exist_ok=True)
    r, out = pull_json(store, ref)
    assert r.returncode == 0 and out["digest"] == digest and diff["layers"], r.stderr
    assert not os.path.exists(f"{tmp}/layer-{hexes[0]}")
    assert not os.path.exists(f"{images_dir(store)}/layers/{hexes[0]}/half")


def test_concurrent_pulls_download_once(world, store):
    proxy = Proxy(world.anon.port, rate=4 << 20)
    env = dict(store, AEGIS_INSECURE_REGISTRIES=world.insecure(proxy.host))
    ref = f"{proxy.host}/test/big:1"
    try:
        ps = [subprocess.Popen([AEGIS, "image", "pull", "--quiet", ref], env=env,
                               stderr=subprocess.PIPE, text=True) for _ in range(3)]
        for p in ps:
            assert p.wait(timeout=120) == 0, p.stderr.read()
        manifest = json.loads(open(f"{world.hand.path}/blobs/sha256/{world.digests['big'][0][7:]}").read())
        for layer in manifest["layers"]:
            assert len(proxy.blob_gets(layer["digest"])) == 1, proxy.requests
        assert refs(env)[ref]["digest"] == world.digests["big"][0]
    finally:
        proxy.stop()


# --- import ----------------------------------------------------------------------

def test_import_oci_layout_dir_needs_a_name(world, store):
    lay = oci.Layout(tempfile.mkdtemp(dir=os.path.dirname(store["AEGIS_STATE_DIR"])))
    d, m, _ = lay.image([(oci.tar_bytes([("x", "file", b"layout\n")]), "gzip")], workdir="/w")
    lay.tag(d, m, "1.0")      # a bare tag names no image
    r = image(store, "import", lay.path)
    assert r.returncode == 125 and "--name" in r.stderr, r.stderr
    assert refs(store) == {}
    r = image(store, "import", "--json", "--name", "local/layout:1", lay.path)
    assert r.returncode == 0, r.stderr
    (img,) = json.loads(r.stdout)["images"]
    assert img["digest"] == d and img["refs"] == ["docker.io/local/layout:1"]
    info = inspect(store, "local/layout:1")
    assert info["config"]["config"]["WorkingDir"] == "/w"
    assert open(f"{info['layers'][0]['path']}/x").read() == "layout\n"


def test_import_oci_archive_from_skopeo(world, store):
    tar = os.path.join(os.path.dirname(store["AEGIS_STATE_DIR"]), "archive.tar")
    r = run(["skopeo", "copy", "--quiet", f"oci:{world.umoci}:multi",
             f"oci-archive:{tar}:example.com/imp/archive:2"])
    assert r.returncode == 0, r.stderr
    r = image(store, "import", "--quiet", tar)
    assert r.returncode == 0, r.stderr
    assert "example.com/imp/archive:2" in refs(store)
    assert len(inspect(store, "example.com/imp/archive:2")["layers"]) == 3


def docker_save_tar(path, entries, layer_member=None):
    """A `docker save` tarball: manifest.json, <id>.json config, <id>/layer.tar;
    the second layer identical to the first, as a symlink, as docker writes it."""
    tar = oci.tar_bytes(entries)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": ["FROM=docker"]},
                      "rootfs": {"type": "layers", "diff_ids": [oci.sha(tar), oci.sha(tar)]}}).encode()
    cid = oci.sha(cfg)[7:]
    manifest = json.dumps([{"Config": f"{cid}.json", "RepoTags": ["imp/docker:3", "imp/docker:latest"],
                            "Layers": [layer_member or "aaa/layer.tar", "bbb/layer.tar"]}]).encode()
    with tarfile.open(path, "w") as t:
        for name, data in (("manifest.json", manifest), (f"{cid}.json", cfg), ("aaa/layer.tar", tar)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, __import__("io").BytesIO(data))
        for name, target in (("bbb/layer.tar", "../aaa/layer.tar"), ("evil/layer.tar", "/etc/passwd")):
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            t.addfile(ti)
    return oci.sha(tar)


def test_import_docker_save(world, store):
    tar = os.path.join(os.path.dirname(store["AEGIS_STATE_DIR"]), "saved.tar")
    diff = docker_save_tar(tar, [("etc/", "dir"), ("etc/os-release", "file", b"ID=test\n")])
    r = image(store, "import", "--json", tar)
    assert r.returncode == 0, r.stderr
    (img,) = json.loads(r.stdout)["images"]
    assert sorted(img["refs"]) == ["docker.io/imp/docker:3", "docker.io/imp/docker:latest"]
    info = inspect(store, "imp/docker:3")
    assert [l["diff_id"] for l in info["layers"]] == [diff, diff]
    assert info["layers"][0]["media_type"] == "application/vnd.docker.image.rootfs.diff.tar"
    assert open(f"{info['layers'][0]['path']}/etc/os-release").read() == "ID=test\n"
    assert "FROM=docker" in info["config"]["config"]["Env"]


def test_import_member_links_never_leave_the_archive(world, store):
    """A layer named by a member that is a symlink to /etc/passwd: the
    archive's names are only looked up among its own members."""
    tar = os.path.join(os.path.dirname(store["AEGIS_STATE_DIR"]), "evil.tar")
    docker_save_tar(tar, [("f", "file", b"x")], layer_member="evil/layer.tar")
    r = image(store, "import", tar)
    assert r.returncode == 125 and "evil/layer.tar" in r.stderr, r.stderr
    assert refs(store) == {} and stored(store)[1] == set()
    assert not [n for n in os.listdir(f"{images_dir(store)}/tmp")], "the copies are removed"


def test_import_garbage(store, tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(os.urandom(4096))
    r = image(store, "import", str(junk))
    assert r.returncode == 125 and len(r.stderr.strip().splitlines()) == 1, r.stderr


# --- hostile layers (A-07, E-05, E-21, E-22, E-23, R-03) -------------------------

def tree(path):
    out = {}
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def escaped_files():
    return [f for d in ("/tmp", "/", "/etc") for f in os.listdir(d) if f.startswith(CANARY_NAME)]


@pytest.mark.parametrize("how", ["pull", "import"])
def test_hostile_layer_is_neutralised(world, store, how):
    canary_before, escaped_before = tree(world.canary), escaped_files()
    if how == "pull":
        ref = f"{world.anon.host}/test/hostile:1"
        r = image(store, "pull", ref)
    else:
        ref = "local/hostile:1"
        r = image(store, "import", "--name", ref, world.hostile.path)
    assert r.returncode == 0, r.stderr
    assert "neutralised" in r.stderr
    (layer,) = layer_paths(store, ref)
    assert tree(world.canary) == canary_before, "the canary dir was written"
    assert escaped_files() == escaped_before, "a file escaped the store"
    assert open(f"{layer}/safe/file").read() == "safe\n"
    assert open(f"{layer}/abs/inside").read() == "abs\n", "absolute paths land inside the layer"
    assert os.readlink(f"{layer}/rootlink") == "/", "symlinks are kept, never followed"
    for name in ("passwd-link", "dotdot-link", "through-link", "dev-null", "dev-sda", "fifo"):
        assert not os.path.lexists(f"{layer}/{name}"), name
    for name in ("suid", "sgid"):
        assert os.stat(f"{layer}/{name}").st_mode & 0o7777 == 0o755, f"{name}: setuid/setgid stripped"
    for root, dirs, files in os.walk(layer):
        for n in files:
            st = os.lstat(os.path.join(root, n))
            assert st.st_uid == os.getuid(), "tar ownership is not applied"
            assert not (st.st_mode & 0o170000 in (0o060000,)), "no block devices"
    assert not any(CANARY_NAME in p for p in tree(images_dir(store))), "escapes not kept inside either"


def test_huge_declared_size_fails_cleanly(world, store):
    """R-03: an entry declaring 8 GiB (over the layer limit, 1g here) fails
    the layer at its header, before any byte is written."""
    assert image(store, "prune").returncode == 0
    lay = world.huge.path
    before = stored(store)
    r = image(store, "import", "--json", "--name", "local/huge:1", lay)
    assert r.returncode == 125, r.stderr
    assert json.loads(r.stdout)["error"]["kind"] == "too_large"
    assert "over the limit" in r.stderr
    assert "docker.io/local/huge:1" not in refs(store)
    assert stored(store)[1] == before[1], "no layer stored"
    assert os.listdir(f"{images_dir(store)}/tmp") == []


# --- list, inspect, rm, prune ------------------------------------------------------

def test_list_inspect_rm(world, store):
    a, b = f"{world.anon.host}/test/zstd:1", f"{world.anon.host}/test/multi:1"
    for ref in (a, b):
        assert image(store, "pull", "--quiet", ref).returncode == 0
    r = image(store, "list", "--json")
    listed = {i["ref"]: i for i in json.loads(r.stdout)["images"]}
    assert set(listed) == {a, b} and listed[a]["layers"] == 2
    r = image(store, "list")
    assert a in r.stdout and b in r.stdout
    zl = layer_paths(store, a)
    r = image(store, "rm", a)
    assert r.returncode == 0 and f"removed {a}" in r.stdout, r.stderr
    assert all(not os.path.exists(p) for p in zl), "its layers went"
    assert all(os.path.exists(p) for p in layer_paths(store, b)), "the other image is intact"
    r = image(store, "inspect", a)
    assert r.returncode == 125 and "not in the store" in r.stderr
    r = image(store, "rm", a)
    assert r.returncode == 125 and "not in the store" in r.stderr


def test_prune_keeps_images_in_use(world, store):
    multi, zstd, arch = (f"{world.anon.host}/test/{n}:1" for n in ("multi", "zstd", "multiarch"))
    for ref in (multi, zstd, arch):
        assert image(store, "pull", "--quiet", ref).returncode == 0
    # an instance names multi (in its short, user-typed form)
    inst = os.path.join(store["AEGIS_STATE_DIR"], "instances", "w")
    os.makedirs(inst)
    json.dump({"name": "w", "image": multi, "argv": ["true"]}, open(f"{inst}/config.json", "w"))
    # a running sandbox holds zstd: the shared lock image_store_resolve takes
    held = open(f"{images_dir(store)}/blobs/sha256/{world.digests['zstd'][0][7:]}")
    fcntl.flock(held, fcntl.LOCK_SH)
    arch_layers = layer_paths(store, arch)
    r = image(store, "prune", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["removed"] == [arch]
    assert set(refs(store)) == {multi, zstd}
    assert not any(os.path.exists(p) for p in arch_layers)
    r = image(store, "rm", "--json", zstd)
    assert r.returncode == 125 and json.loads(r.stdout)["error"]["kind"] == "in_use", r.stdout
    held.close()
    r = image(store, "prune")
    assert r.returncode == 0 and set(refs(store)) == {multi}
    assert all(os.path.isdir(p) for p in layer_paths(store, multi))
    blobs, layers = stored(store)
    assert len(layers) == 3 and len(blobs) == 2, (blobs, layers)   # manifest, config
    # an instance pinned to a digest (aegisd's "image_digest") keeps that
    # image even when its reference has moved on
    zdigest = world.digests["zstd"][0]
    assert image(store, "pull", "--quiet", zstd).returncode == 0
    json.dump({"image": multi, "image_digest": zdigest}, open(f"{inst}/config.json", "w"))
    assert image(store, "rm", "--force", zstd).returncode == 0
    assert image(store, "prune").returncode == 0
    assert inspect(store, zdigest)["digest"] == zdigest
    # an instance that names its image by digest keeps it, ref or not
    digest = refs(store)[multi]["digest"]
    json.dump({"image": f"{world.anon.host}/test/multi@{digest}"}, open(f"{inst}/config.json", "w"))
    r = image(store, "rm", multi)
    assert r.returncode == 125 and "in use" in r.stderr
    assert image(store, "rm", "--force", multi).returncode == 0 and refs(store) == {}
    assert image(store, "prune").returncode == 0
    assert inspect(store, digest)["digest"] == digest, "still resolvable by its digest"


def test_busybox_and_debian_images_for_run(world, store):
    """The images `aegis run --image` is tested with: imported, resolvable,
    with the image's env; their layers hold what a root needs."""
    from images.fixtures import busybox_layout, debian_layout
    work = os.path.dirname(store["AEGIS_STATE_DIR"])
    bb, deb = busybox_layout(f"{work}/bb"), debian_layout(f"{work}/deb")
    assert image(store, "import", "--quiet", "--name", "local/busybox:1", bb.path).returncode == 0
    r = image(store, "import", "--quiet", "--name", "local/debian:12", deb.path)
    assert r.returncode == 0, r.stderr
    (layer,) = layer_paths(store, "local/busybox:1")
    assert os.readlink(f"{layer}/bin/sh") == "busybox"
    assert "PATH=/bin" in inspect(store, "local/busybox:1")["config"]["config"]["Env"]
    top = layer_paths(store, "local/debian:12")
    assert os.path.exists(f"{top[2]}/usr/bin/bash") and os.readlink(f"{top[0]}/bin") == "usr/bin"
    r = run(["unshare", "-m", "sh", "-c",
             f"mount -t overlay overlay -o lowerdir={':'.join(reversed(top))},userxattr {work}/bb && "
             f"chroot {work}/bb /bin/bash -c 'echo $BASH_VERSION; ls /usr/bin/ls'"])
    assert r.returncode == 0 and "/usr/bin/ls" in r.stdout, r.stderr


def test_damaged_store_is_an_error_and_a_pull_repairs(world, store):
    """Blobs are hashed again when read: an edited config is an error, never
    another image; a missing layer makes the image absent until pulled."""
    ref = f"{world.anon.host}/test/zstd:1"
    assert image(store, "pull", "--quiet", ref).returncode == 0
    cfg = inspect(store, ref)
    config_digest = json.load(open(f"{images_dir(store)}/blobs/sha256/{cfg['digest'][7:]}"))["config"]["digest"]
    path = f"{images_dir(store)}/blobs/sha256/{config_digest[7:]}"
    good = open(path, "rb").read()
    open(path, "wb").write(good.replace(b"PATH=", b"PATX="))
    r = image(store, "inspect", ref)
    assert r.returncode == 125 and "damaged" in r.stderr and config_digest in r.stderr, r.stderr
    open(path, "wb").write(good)
    shutil.rmtree(cfg["layers"][1]["path"])
    r = image(store, "inspect", ref)
    assert r.returncode == 125 and "not in the store" in r.stderr, r.stderr
    assert image(store, "pull", "--quiet", ref).returncode == 0
    assert os.path.isdir(inspect(store, ref)["layers"][1]["path"])
