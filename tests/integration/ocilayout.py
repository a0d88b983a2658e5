"""Build small OCI image layouts by hand for the engine's image tests: layers
as tar files (whiteouts, opaque dirs, hostile symlinks as the test wants),
a config with Env and WorkingDir, an index naming the manifest. The base
layer carries a shell and a few tools copied from the host with the
libraries they need, so the images run without any network."""
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile

TOOLS = ["dash", "cat", "ls", "echo", "id", "stat", "mkdir", "rm", "mv", "touch", "head", "wc", "dd", "readlink",
         "uname", "sleep", "printf", "true", "env", "sha256sum", "df"]


def _libs(binaries):
    out = subprocess.run(["ldd", *binaries], capture_output=True, text=True).stdout
    return sorted(set(re.findall(r"(/\S+\.so[.\d]*)", out)))


def base_entries():
    """The base layer: /usr/bin tools, their libraries, the merged-usr links."""
    bins = [f"/usr/bin/{t}" for t in TOOLS if os.path.exists(f"/usr/bin/{t}")]
    entries = [("usr/", "dir"), ("usr/bin/", "dir"), ("usr/lib/", "dir"), ("usr/lib64/", "dir"),
               ("usr/lib/x86_64-linux-gnu/", "dir"), ("etc/", "dir"), ("tmp/", "dir"),
               ("bin", "symlink", "usr/bin"), ("lib", "symlink", "usr/lib"), ("lib64", "symlink", "usr/lib64"),
               ("usr/bin/sh", "symlink", "dash"),
               ("etc/passwd", "file", b"root:x:0:0:root:/root:/bin/sh\n"),
               ("etc/group", "file", b"root:x:0:\n")]
    for b in bins:
        entries.append((b.lstrip("/"), "file", open(b, "rb").read(), 0o755))
    for lib in _libs(bins):
        real = os.path.realpath(lib)
        name = lib.lstrip("/")
        if not name.startswith("usr/"):
            name = "usr/" + name
        entries.append((name, "file", open(real, "rb").read(), 0o755))
    return entries


def _tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            name, kind = e[0], e[1]
            info = tarfile.TarInfo(name.rstrip("/") if kind != "dir" else name)
            info.mtime = 1700000000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, e[2] if len(e) > 2 else 0o755
                t.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, e[2]
                t.addfile(info)
            elif kind == "file":
                data = e[2]
                info.size, info.mode = len(data), e[3] if len(e) > 3 else 0o644
                t.addfile(info, io.BytesIO(data))
            else:
                raise ValueError(kind)
    return buf.getvalue()


def _blob(root, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(root, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)


def build(root, layers, env=(), workdir=None, tag="latest"):
    """An OCI layout at root: layers is a list of entry lists (bottom first),
    each entry (name, "dir"[, mode]) or (name, "file"|"symlink", data or target[, mode])."""
    os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(root, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    descs, diff_ids = [], []
    for entries in layers:
        raw = _tar(entries)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        gz = gzip.compress(raw, mtime=0)
        d, n = _blob(root, gz)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": list(env), **({"WorkingDir": workdir} if workdir else {})},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cd, cn = _blob(root, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
                "layers": descs}
    md, mn = _blob(root, json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                "digest": md, "size": mn,
                                                "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump(index, f)
    return md
