"""OCI image layouts written by hand: layers as tar bytes (Python's tarfile,
so hostile entries are possible), gzip or zstd, configs, manifests, an
index with several platforms. Enough to build any fixture in milliseconds."""
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {"": "application/vnd.oci.image.layer.v1.tar",
               "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
               "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_bytes(entries):
    """entries: (name, kind, arg, extra) tuples. kind: file (arg: bytes),
    dir, symlink (arg: target), hardlink (arg: target), chr, blk, fifo;
    extra: dict of TarInfo attributes (mode, size, ...)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            name, kind, arg = e[0], e[1], e[2] if len(e) > 2 else None
            extra = e[3] if len(e) > 3 else {}
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            data = None
            if kind == "file":
                data = arg or b""
                ti.size = len(data)
                ti.mode = 0o644
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, arg
            elif kind in ("chr", "blk"):
                ti.type = tarfile.CHRTYPE if kind == "chr" else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = arg
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            for k, v in extra.items():
                setattr(ti, k, v)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def compress(data, how):
    if how == "gzip":
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, capture_output=True,
                              check=True).stdout
    return data


class Layout:
    """An OCI layout directory being written."""

    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        self.entries = []

    def blob(self, data):
        d = sha(data)
        with open(os.path.join(self.path, "blobs", "sha256", d[7:]), "wb") as f:
            f.write(data)
        return d

    def image(self, layers, env=None, workdir=None, arch="amd64", layer_type=None):
        """layers: (tar bytes, compression) pairs. Returns (manifest digest,
        manifest bytes, the config dict)."""
        descs, diff_ids = [], []
        for tar, how in layers:
            blob = compress(tar, how)
            descs.append({"mediaType": layer_type or LAYER_TYPES[how], "digest": self.blob(blob),
                          "size": len(blob)})
            diff_ids.append(sha(tar))
        config = {"architecture": arch, "os": "linux",
                  "config": {"Env": env or ["PATH=/usr/bin:/bin"], **({"WorkingDir": workdir} if workdir else {})},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        cfg = json.dumps(config).encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": OCI_CONFIG, "digest": self.blob(cfg),
                                          "size": len(cfg)},
                               "layers": descs}).encode()
        return self.blob(manifest), manifest, config

    def tag(self, digest, data, name, media_type=OCI_MANIFEST, platform=None):
        e = {"mediaType": media_type, "digest": digest, "size": len(data),
             "annotations": {"org.opencontainers.image.ref.name": name}}
        if platform:
            e["platform"] = platform
        self.entries.append(e)
        self.write_index()

    def index(self, manifests):
        """manifests: (digest, bytes, platform dict) → the index blob's (digest, bytes)."""
        doc = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": d, "size": len(b), "platform": p}
            for d, b, p in manifests]}).encode()
        return self.blob(doc), doc

    def write_index(self):
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.entries}, f)
