#!/usr/bin/env python3
"""bench/daemon.py: aegisd start to socket ready, and an instance's life.

1. Start aegisd on a fresh socket and time until a connect succeeds
   (Firecracker promises ~12 ms to its API socket; aim lower). 20 runs.
2. `aegis instance start` + wait for running + `aegis instance delete`,
   CLI round trips, 20 instances one after the other.
Run: python3 bench/daemon.py (AEGIS_BIN overrides build/aegis)."""
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AEGIS = os.environ.get("AEGIS_BIN", os.path.join(ROOT, "build", "aegis"))
AEGISD = os.path.join(os.path.dirname(AEGIS), "aegisd")


def start_to_ready():
    times = []
    for _ in range(20):
        d = tempfile.mkdtemp()
        sock = os.path.join(d, "run", "aegisd.sock")
        env = dict(os.environ, AEGIS_STATE_DIR=os.path.join(d, "state"))
        t = time.perf_counter()
        p = subprocess.Popen([AEGISD, "--socket", sock], env=env, stderr=subprocess.DEVNULL)
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(sock)
                s.close()
                break
            except OSError:
                time.sleep(0.0002)
        times.append((time.perf_counter() - t) * 1000)
        p.terminate()
        p.wait()
        shutil.rmtree(d)
    return times


def instance_cycle():
    d = tempfile.mkdtemp()
    env = dict(os.environ, AEGIS_SOCKET=os.path.join(d, "run", "aegisd.sock"),
               AEGIS_STATE_DIR=os.path.join(d, "state"))
    subprocess.run([AEGIS, "up"], env=env, check=True, capture_output=True)
    starts, deletes = [], []
    for i in range(20):
        t = time.perf_counter()
        subprocess.run([AEGIS, "instance", "start", "--name", f"b{i}", "--", "sleep", "60"], env=env,
                       check=True, capture_output=True)
        while json.loads(subprocess.run([AEGIS, "instance", "info", f"b{i}"], env=env, capture_output=True,
                                        text=True).stdout)["state"] != "running":
            pass
        starts.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        subprocess.run([AEGIS, "instance", "delete", f"b{i}"], env=env, check=True, capture_output=True)
        deletes.append((time.perf_counter() - t) * 1000)
    subprocess.run([AEGIS, "down"], env=env, capture_output=True)
    shutil.rmtree(d)
    return starts, deletes


def main():
    ready = start_to_ready()
    starts, deletes = instance_cycle()
    print("# aegisd bench\n")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, kernel {os.uname().release}\n")
    print("| measurement | median ms | max ms |")
    print("|---|---:|---:|")
    print(f"| aegisd start to socket accepting (20 runs) | {statistics.median(ready):.2f} | {max(ready):.2f} |")
    print(f"| instance start until running, CLI (20) | {statistics.median(starts):.2f} | {max(starts):.2f} |")
    print(f"| instance delete, CLI (20) | {statistics.median(deletes):.2f} | {max(deletes):.2f} |")


if __name__ == "__main__":
    main()
