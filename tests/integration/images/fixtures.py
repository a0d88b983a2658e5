"""The images the tests pull and import, built once per session: with umoci
(a multi-layer image whose deletions become whiteouts, plus a hand-made
opaque-directory layer added verbatim), and by hand (an index with two
platforms, a zstd layer, hostile layers), pushed with skopeo."""
import os
import subprocess

from . import oci
from .registry import PASSWORD, USER, Registry, TokenServer, make_token_cert

CANARY_NAME = "aegis-hostile-canary"


def sh(*args, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)
    assert r.returncode == 0, f"{args}: {r.stderr}"
    return r.stdout


def umoci_multi(work):
    """Three layers: files; a deletion (umoci writes .wh.gone); an opaque dir."""
    lay = f"{work}/umoci"
    sh("umoci", "init", "--layout", lay)
    sh("umoci", "new", "--image", f"{lay}:multi")
    sh("umoci", "unpack", "--image", f"{lay}:multi", f"{work}/bundle")
    root = f"{work}/bundle/rootfs"
    for d in ("etc", "data/old", "bin"):
        os.makedirs(f"{root}/{d}", exist_ok=True)
    for path, text in (("etc/motd", "layer one\n"), ("etc/gone", "deleted later\n"),
                       ("data/old/a", "old a\n"), ("data/old/b", "old b\n")):
        with open(f"{root}/{path}", "w") as f:
            f.write(text)
    os.symlink("../etc/motd", f"{root}/bin/motd-link")
    sh("umoci", "repack", "--image", f"{lay}:multi", f"{work}/bundle")
    # a bundle repacks against the image it was unpacked from: unpack anew
    sh("umoci", "unpack", "--image", f"{lay}:multi", f"{work}/bundle2")
    root = f"{work}/bundle2/rootfs"
    os.unlink(f"{root}/etc/gone")
    with open(f"{root}/etc/motd", "w") as f:
        f.write("layer two\n")
    sh("umoci", "repack", "--image", f"{lay}:multi", f"{work}/bundle2")
    opaque = oci.tar_bytes([("data/", "dir"), ("data/old/", "dir"), ("data/old/.wh..wh..opq", "file", b""),
                            ("data/old/c", "file", b"new c\n")])
    with open(f"{work}/opaque.tar", "wb") as f:
        f.write(opaque)
    sh("umoci", "raw", "add-layer", "--image", f"{lay}:multi", f"{work}/opaque.tar")
    sh("umoci", "config", "--image", f"{lay}:multi", "--config.env", "GREETING=hello",
       "--config.workingdir", "/data")
    return lay


def hand_made(work):
    """One layout, several tags: multiarch (index), zstd, hostile, small, huge."""
    lay = oci.Layout(f"{work}/hand")
    amd = lay.image([(oci.tar_bytes([("arch", "file", b"amd64\n")]), "gzip")], arch="amd64")
    arm = lay.image([(oci.tar_bytes([("arch", "file", b"arm64\n")]), "gzip")], arch="arm64")
    idx_digest, idx = lay.index([(arm[0], arm[1], {"os": "linux", "architecture": "arm64", "variant": "v8"}),
                                 (amd[0], amd[1], {"os": "linux", "architecture": "amd64"})])
    lay.tag(idx_digest, idx, "multiarch", media_type=oci.OCI_INDEX)
    arm_digest, arm_idx = lay.index([(arm[0], arm[1], {"os": "linux", "architecture": "arm64", "variant": "v8"})])
    lay.tag(arm_digest, arm_idx, "armonly", media_type=oci.OCI_INDEX)
    z = lay.image([(oci.tar_bytes([("z/", "dir"), ("z/data", "file", b"zstd layer\n" * 100)]), "zstd"),
                   (oci.tar_bytes([("plain", "file", b"uncompressed layer\n")]), "")])
    lay.tag(z[0], z[1], "zstd")
    small = lay.image([(oci.tar_bytes([("hello", "file", b"private\n")]), "gzip")], env=["A=1"],
                      workdir="/srv")
    lay.tag(small[0], small[1], "small")
    # incompressible, so a slowed download takes long enough to interrupt
    big = lay.image([(oci.tar_bytes([("random", "file", os.urandom(3 << 20))]), "gzip"),
                     (oci.tar_bytes([("second", "file", os.urandom(1 << 20))]), "gzip")])
    lay.tag(big[0], big[1], "big")
    # many small files: an unpack that lasts long enough to be killed
    many = lay.image([(oci.tar_bytes([("d/", "dir")] + [(f"d/f{i}", "file", b"x" * 100) for i in range(30000)]),
                       "gzip")])
    lay.tag(many[0], many[1], "many")
    return lay, {"many": many, "multiarch": (idx_digest, amd[0], arm[0]), "zstd": z, "small": small, "big": big}


def hostile_entries(canary_dir):
    """Every escape we know, next to safe entries that must be there after."""
    return [
        ("safe/", "dir"), ("safe/file", "file", b"safe\n"),
        ("../" + CANARY_NAME + "-dotdot", "file", b"x"),
        ("../../../../../../tmp/" + CANARY_NAME + "-deep", "file", b"x"),
        ("/abs/inside", "file", b"abs\n"),
        ("rootlink", "symlink", "/"),
        ("rootlink/tmp/" + CANARY_NAME + "-through-symlink", "file", b"x"),
        ("canarylink", "symlink", canary_dir),
        ("canarylink/" + CANARY_NAME + "-through-abs-symlink", "file", b"x"),
        ("uplink", "symlink", "../../../../../../.."),
        ("uplink/tmp/" + CANARY_NAME + "-through-up-symlink", "file", b"x"),
        ("passwd-link", "hardlink", "/etc/passwd"),
        ("dotdot-link", "hardlink", "../../" + CANARY_NAME + "-x"),
        ("through-link", "hardlink", "rootlink/etc/passwd"),
        ("dev-null", "chr", (1, 3)), ("dev-sda", "blk", (8, 0)), ("fifo", "fifo"),
        ("suid", "file", b"#!/bin/sh\n", {"mode": 0o4755}),
        ("sgid", "file", b"#!/bin/sh\n", {"mode": 0o2755}),
    ]


def hostile_layout(work, canary_dir):
    lay = oci.Layout(f"{work}/hostile")
    h = lay.image([(oci.tar_bytes(hostile_entries(canary_dir)), "gzip")])
    lay.tag(h[0], h[1], "hostile")
    # a file declaring 8 GiB (over the store's layer limit in the tests)
    big = oci.tar_bytes([("big", "file", b"")])
    big = bytearray(big)
    i = big.find(b"big\0")
    header = bytearray(big[i:i + 512])
    header[124:136] = b"77777777777\0"
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    big[i:i + 512] = header
    other = oci.Layout(f"{work}/huge")
    huge = other.image([(bytes(big), "gzip")])
    other.tag(huge[0], huge[1], "huge")
    return lay, other, {"hostile": h, "huge": huge}


class World:
    """Everything the image tests share in a session."""

    def __init__(self, work):
        self.work = work
        self.canary = f"{work}/canary"
        os.makedirs(self.canary)
        with open(f"{self.canary}/keep", "w") as f:
            f.write("canary\n")
        self.umoci = umoci_multi(work)
        self.hand, self.digests = hand_made(work)
        self.hostile, self.huge, hd = hostile_layout(work, self.canary)
        self.digests.update(hd)
        make_token_cert(work)
        self.tokens = TokenServer(work)
        self.anon = Registry(f"{work}/anon")
        self.basic = Registry(f"{work}/basic", auth="basic")
        self.token = Registry(f"{work}/token", auth="token", token_realm=self.tokens.realm)
        creds = f"{USER}:{PASSWORD}"
        self.anon.push(f"oci:{self.umoci}:multi", "test/multi:1")
        self.anon.push(f"oci:{self.hand.path}:multiarch", "test/multiarch:1", all_platforms=True)
        self.anon.push(f"oci:{self.hand.path}:zstd", "test/zstd:1")
        self.anon.push(f"oci:{self.hand.path}:armonly", "test/armonly:1", all_platforms=True)
        self.anon.push(f"oci:{self.hostile.path}:hostile", "test/hostile:1")
        self.anon.push(f"oci:{self.hand.path}:big", "test/big:1")
        self.anon.push(f"oci:{self.hand.path}:many", "test/many:1")
        self.basic.push(f"oci:{self.hand.path}:small", "private/small:1", creds=creds)
        self.token.push(f"oci:{self.hand.path}:small", "private/small:1", creds=creds)

    def insecure(self, *more):
        return ",".join([self.anon.host, self.basic.host, self.token.host, *more])

    def stop(self):
        for r in (self.anon, self.basic, self.token):
            r.stop()
        self.tokens.stop()


def busybox_layout(path):
    """A busybox image (Debian's static busybox and its applet links), for
    `aegis run --image`. Returns the Layout; tag "busybox"."""
    applets = sh("/bin/busybox", "--list").split()
    with open("/bin/busybox", "rb") as f:
        bb = f.read()
    entries = [("bin/", "dir"), ("bin/busybox", "file", bb, {"mode": 0o755}), ("etc/", "dir"),
               ("etc/passwd", "file", b"root:x:0:0:root:/root:/bin/sh\n"), ("tmp/", "dir", None, {"mode": 0o1777}),
               ("root/", "dir")]
    entries += [(f"bin/{a}", "symlink", "busybox") for a in applets if a != "busybox"]
    lay = oci.Layout(path)
    d, m, _ = lay.image([(oci.tar_bytes(entries), "gzip")], env=["PATH=/bin", "HOME=/root"], workdir="/root")
    lay.tag(d, m, "busybox")
    return lay


DEBIAN_PACKAGES = ["base-files", "libc6", "bash", "dash", "coreutils", "libtinfo6", "libacl1", "libattr1",
                   "libgmp10", "libselinux1", "libpcre2-8-0"]


def debian_layout(path, zstd=True):
    """A minimal Debian 12 image from this host's installed packages (their
    files as dpkg lists them, no docs) in three layers: the usrmerge links,
    libc6, the rest (zstd unless zstd=False: umoci 0.4 reads no zstd).
    Returns the Layout; tag "debian"."""
    import io
    import tarfile

    def layer(packages):
        names = set()
        for p in packages:
            names.update(l for l in sh("dpkg", "-L", p).splitlines()
                         if l.startswith("/") and not l.startswith(("/usr/share/doc", "/usr/share/man",
                                                                    "/usr/share/locale", "/usr/share/info")))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            for n in sorted(names):
                # usrmerge: /bin/x is /usr/bin/x (bin itself is a symlink of the first layer)
                real = os.path.join(os.path.realpath(os.path.dirname(n)), os.path.basename(n))
                if os.path.lexists(n) and n != "/" and (os.path.isdir(n) is False or real == n):
                    t.add(n, arcname=real.lstrip("/"), recursive=False)
        return buf.getvalue()

    usrmerge = oci.tar_bytes([("bin", "symlink", "usr/bin"), ("sbin", "symlink", "usr/sbin"),
                              ("lib", "symlink", "usr/lib"), ("lib64", "symlink", "usr/lib64"),
                              ("tmp/", "dir", None, {"mode": 0o1777}), ("root/", "dir"),
                              ("usr/", "dir"), ("usr/bin/", "dir"), ("usr/lib/", "dir")])
    lay = oci.Layout(path)
    d, m, _ = lay.image([(usrmerge, "gzip"), (layer(["libc6"]), "gzip"),
                         (layer([p for p in DEBIAN_PACKAGES if p != "libc6"]), "zstd" if zstd else "gzip")],
                        env=["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"])
    lay.tag(d, m, "debian")
    return lay
