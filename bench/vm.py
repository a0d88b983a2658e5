#!/usr/bin/env python3
"""bench/vm.py: the vm backend's cold boot, to first output and to exit.

For each accelerator it can use here — TCG always, KVM where /dev/kvm
exists — it runs `aegis run --backend vm -- echo hi` BENCH_RUNS times
(default 5: each is a full boot) and prints the median, min and max of:
  - first output: spawn of `aegis` to the first byte of "hi" on its stdout
    (QEMU start, kernel boot, aegis-guest up, request, echo, relay);
  - exit: spawn to reap (the above plus tearing QEMU down);
  - boot_ms: QEMU start to the guest's greeting, as `--json` reports it.
A KVM attempt that fails (a /dev/kvm that answers but cannot run a guest)
is printed as such, with aegis's one-line error. Snapshot-restore is not
measured: it does not exist yet (docs/vm.md).

Run: python3 bench/vm.py (after make build; it runs scripts/vm-guest.sh).
Env: AEGIS_BIN (default build/aegis), BENCH_RUNS (5)."""
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AEGIS = os.path.abspath(os.environ.get("AEGIS_BIN", os.path.join(ROOT, "build/aegis")))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


def once(accel):
    env = dict(os.environ, AEGIS_VM_ACCEL=accel)
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


def boot_ms(accel):
    env = dict(os.environ, AEGIS_VM_ACCEL=accel)
    r = subprocess.run([AEGIS, "run", "--backend", "vm", "--json", "--", "true"], env=env,
                       capture_output=True, text=True)
    return json.loads(r.stdout)["boot_ms"] if r.returncode == 0 else None


def row(name, xs):
    return f"| {name} | {statistics.median(xs):.0f} | {min(xs):.0f} | {max(xs):.0f} |"


def bench(accel):
    try:
        runs = [once(accel) for _ in range(RUNS)]
    except RuntimeError as e:
        print(f"\n{accel}: cannot run: {e}")
        return
    boots = [b for b in (boot_ms(accel) for _ in range(RUNS)) if b is not None]
    print(f"\n{accel} ({RUNS} boots each), ms:\n")
    print("| measure | median | min | max |\n|---|---|---|---|")
    print(row("spawn to first output", [r[0] for r in runs]))
    print(row("spawn to exit", [r[1] for r in runs]))
    if boots:
        print(row("QEMU start to guest greeting (boot_ms)", boots))


def main():
    r = subprocess.run([os.path.join(ROOT, "scripts/vm-guest.sh"), os.path.dirname(AEGIS)])
    if r.returncode != 0:
        sys.exit(1)
    with open(os.path.join(os.path.dirname(AEGIS), "vm/release")) as f:
        print(f"guest kernel {f.read().strip()}, host {os.uname().release}, {os.cpu_count()} CPUs")
    bench("tcg")
    if os.path.exists("/dev/kvm"):
        bench("kvm")
    else:
        print("\nkvm: no /dev/kvm on this host")


if __name__ == "__main__":
    main()
