#!/usr/bin/env python3
"""bench/vm.py: the vm backend's start, cold boot and snapshot restore.

For each accelerator — TCG always, KVM where /dev/kvm exists — and each
way a guest starts — "cold" (AEGIS_VM_SNAPSHOT=0: a full boot) and
"restore" (a clone of a snapshot, built once beforehand in a scratch state
directory and not timed) — it runs `aegis run --backend vm -- echo hi`
BENCH_RUNS times (default 5) and prints the median, min and max of:
  - first output: spawn of `aegis` to the first byte of "hi" on its stdout
    (QEMU start, boot or restore, request, echo, relay);
  - exit: spawn to reap (the above plus tearing QEMU down);
  - boot_ms (cold: QEMU start to the guest's greeting) or restore_ms
    (QEMU start to the restored guest running), as `--json` reports it.
An accelerator that cannot run a guest (a /dev/kvm that answers but where
QEMU aborts) is printed as unusable, with aegis's one-line error.

Run: python3 bench/vm.py (after make build; it runs scripts/vm-guest.sh).
Env: AEGIS_BIN (default build/aegis), BENCH_RUNS (5)."""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AEGIS = os.path.abspath(os.environ.get("AEGIS_BIN", os.path.join(ROOT, "build/aegis")))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


def env_for(accel, start, state):
    return dict(os.environ, AEGIS_VM_ACCEL=accel, AEGIS_STATE_DIR=state,
                AEGIS_VM_SNAPSHOT="1" if start == "restore" else "0")


def once(env):
    t0 = time.monotonic()
    p = subprocess.Popen([AEGIS, "run", "--backend", "vm", "--", "echo", "hi"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    first = p.stdout.read(1)  # unbuffered: nothing read ahead is lost to communicate()
    t1 = time.monotonic()
    rest, err = p.communicate()
    t2 = time.monotonic()
    if p.returncode != 0 or first + rest != b"hi\n":
        raise RuntimeError(err.decode(errors="replace").strip() or f"exit {p.returncode}")
    return (t1 - t0) * 1000, (t2 - t0) * 1000


def reported(env, start):
    """boot_ms or restore_ms of one --json run; RuntimeError when it did not start as asked."""
    r = subprocess.run([AEGIS, "run", "--backend", "vm", "--json", "--", "true"], env=env,
                       capture_output=True, text=True)
    try:
        res = json.loads(r.stdout)
    except ValueError:
        raise RuntimeError(r.stderr.strip() or f"exit {r.returncode}")
    if r.returncode != 0 or res.get("start") != start:
        raise RuntimeError(res.get("error", {}).get("message") or res.get("start_reason") or r.stderr.strip())
    return res["restore_ms" if start == "restore" else "boot_ms"]


def row(name, xs):
    return f"| {name} | {statistics.median(xs):.0f} | {min(xs):.0f} | {max(xs):.0f} |"


def bench(accel, start):
    state = tempfile.mkdtemp(prefix="aegis-bench-vm-")
    env = env_for(accel, start, state)
    try:
        if start == "restore":
            reported(env, start)  # builds the snapshot: not timed
        runs = [once(env) for _ in range(RUNS)]
        inner = [reported(env, start) for _ in range(RUNS)]
    except RuntimeError as e:
        print(f"\n{accel} {start}: unusable here: {e}")
        return
    finally:
        shutil.rmtree(state, ignore_errors=True)
    print(f"\n{accel}, {start} ({RUNS} runs each), ms:\n")
    print("| measure | median | min | max |\n|---|---|---|---|")
    print(row("spawn to first output", [r[0] for r in runs]))
    print(row("spawn to exit", [r[1] for r in runs]))
    print(row("QEMU start to guest running (restore_ms)" if start == "restore"
              else "QEMU start to guest greeting (boot_ms)", inner))


def main():
    r = subprocess.run([os.path.join(ROOT, "scripts/vm-guest.sh"), os.path.dirname(AEGIS)])
    if r.returncode != 0:
        sys.exit(1)
    with open(os.path.join(os.path.dirname(AEGIS), "vm/release")) as f:
        print(f"guest kernel {f.read().strip()}, host {os.uname().release}, {os.cpu_count()} CPUs")
    for start in ("cold", "restore"):
        bench("tcg", start)
    if os.path.exists("/dev/kvm"):
        for start in ("cold", "restore"):
            bench("kvm", start)
    else:
        print("\nkvm: unusable here: no /dev/kvm on this host")


if __name__ == "__main__":
    main()
