#!/usr/bin/env python3
"""bench/images.py: images, from a registry on 127.0.0.1 (Debian's
docker-registry) to a cached root.

1. Pull + unpack of a multi-layer image (a minimal Debian, three gzip
   layers: umoci 0.4 reads no zstd), cold store each time: `aegis image pull` vs `skopeo copy` to an OCI
   layout + `umoci unpack` of it (the Debian tools doing the same job).
2. What a cached image adds to a sandbox's cold start on the store side:
   image_store_resolve() (bench/resolve.c).
3. If `aegis run --image` is there: cold start with the cached image vs the
   host image (`/bin/true`, median of 50).
Run: python3 bench/images.py (AEGIS_BIN overrides build/aegis; BENCH_RUNS=5)."""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from images.fixtures import busybox_layout, debian_layout  # noqa: E402
from images.registry import Registry  # noqa: E402

AEGIS = os.environ.get("AEGIS_BIN", os.path.join(ROOT, "build", "aegis"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


def timed(args, env=None):
    t = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def pulls(work, reg):
    ref = f"{reg.host}/bench/debian:12"
    ours, theirs = [], []
    for i in range(RUNS):
        state = f"{work}/state{i}"
        env = dict(os.environ, AEGIS_STATE_DIR=state, AEGIS_INSECURE_REGISTRIES=reg.host)
        ours.append(timed([AEGIS, "image", "pull", "--quiet", ref], env))
        lay, bundle = f"{work}/skopeo{i}", f"{work}/bundle{i}"
        theirs.append(timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                             f"docker://{ref}", f"oci:{lay}:debian"]) +
                      timed(["umoci", "unpack", "--image", f"{lay}:debian", bundle]))
        shutil.rmtree(lay)
        shutil.rmtree(bundle)
    return statistics.median(ours), statistics.median(theirs), state, env


def resolve_cost(work, state):
    exe = f"{work}/resolve"
    subprocess.run(["cc", "-O2", "-D_GNU_SOURCE", f"-I{ROOT}/include", f"{ROOT}/bench/resolve.c",
                    f"{os.path.dirname(AEGIS)}/libaegis.a", "-ljansson", "-lcrypto", "-o", exe], check=True)
    out = subprocess.run([exe, state, "local/busybox:1", "2000"], capture_output=True, text=True, check=True)
    return [float(x) for x in out.stdout.split()]


def cold_start(env):
    def median(args):
        times = [timed(args, env) for _ in range(50)]
        return statistics.median(times) * 1e3
    host = median([AEGIS, "run", "--", "/bin/true"])
    image = median([AEGIS, "run", "--image", "local/busybox:1", "--", "/bin/true"])
    return host, image


def main():
    work = tempfile.mkdtemp(prefix="aegis-bench-images-")
    try:
        deb = debian_layout(f"{work}/debian", zstd=False)
        size = sum(os.path.getsize(f"{deb.path}/blobs/sha256/{b}") for b in os.listdir(f"{deb.path}/blobs/sha256"))
        reg = Registry(f"{work}/registry")
        try:
            reg.push(f"oci:{deb.path}:debian", "bench/debian:12")
            ours, theirs, state, env = pulls(work, reg)
        finally:
            reg.stop()
        print(f"pull+unpack of a 3-layer Debian image ({size / 2**20:.1f} MiB compressed), median of {RUNS}:")
        print(f"  aegis image pull            {ours * 1e3:8.1f} ms")
        print(f"  skopeo copy + umoci unpack  {theirs * 1e3:8.1f} ms")
        bb = busybox_layout(f"{work}/busybox")
        subprocess.run([AEGIS, "image", "import", "--quiet", "--name", "local/busybox:1", bb.path], env=env,
                       check=True)
        med, p90 = resolve_cost(work, state)
        print(f"image_store_resolve of a cached image: median {med:.1f} us, p90 {p90:.1f} us")
        help_text = subprocess.run([AEGIS, "run", "--help"], capture_output=True, text=True).stdout
        if "--image" in help_text:
            host, image = cold_start(env)
            print(f"cold start /bin/true: host image {host:.2f} ms, cached busybox image {image:.2f} ms "
                  f"(+{image - host:.2f} ms)")
        else:
            print("cold start with --image: aegis run has no --image yet (the engine side)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
