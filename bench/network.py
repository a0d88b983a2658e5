#!/usr/bin/env python3
"""bench/network.py: the egress proxy's cost, side by side with no sandbox.

1. Throughput: download 1 GiB from a server on host loopback with curl,
   directly on the host and from an `aegis run --net allow` sandbox (through
   the proxy). Target: >= 80% of direct.
2. Connection setup: 200 sequential small HTTP requests, each on a new
   connection, from python inside the sandbox (through the proxy) and on the
   host (direct); the difference per request is what the proxy adds.
   Target: <= 1 ms added per connection.
Run: python3 bench/network.py (AEGIS_BIN overrides build/aegis)."""
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AEGIS = os.environ.get("AEGIS_BIN", os.path.join(ROOT, "build", "aegis"))
SIZE = 1 << 30
CHUNK = b"\0" * (1 << 20)


def serve(lsock):
    """GET /big -> SIZE bytes; anything else -> 2 bytes. One thread per client."""
    def client(c):
        with c:
            req = b""
            while b"\r\n\r\n" not in req:
                d = c.recv(4096)
                if not d:
                    return
                req += d
            big = b" /big " in req.split(b"\r\n")[0]
            n = SIZE if big else 2
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % n)
            if big:
                for _ in range(SIZE // len(CHUNK)):
                    c.sendall(CHUNK)
            else:
                c.sendall(b"ok")
    while True:
        try:
            c, _ = lsock.accept()
        except OSError:
            return
        threading.Thread(target=client, args=(c,), daemon=True).start()


def main():
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    port = lsock.getsockname()[1]
    threading.Thread(target=serve, args=(lsock,), daemon=True).start()
    net = ["--net", "allow", "--host", f"bench.test=127.0.0.1", "--allow", f"bench.test:{port}",
           "--timeout", "300s", "--output", "64m"]
    curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}"]

    direct = [float(subprocess.run(curl + [f"http://127.0.0.1:{port}/big"], capture_output=True,
                                   text=True, check=True).stdout) for _ in range(3)]
    proxied = [float(subprocess.run([AEGIS, "run", *net, "--"] + curl + [f"http://bench.test:{port}/big"],
                                    capture_output=True, text=True, check=True).stdout) for _ in range(3)]
    d, p = statistics.median(direct), statistics.median(proxied)

    loop = (f"import socket, time\n"
            f"def one(addr, req):\n"
            f"  s = socket.create_connection(addr); s.sendall(req)\n"
            f"  while s.recv(4096): pass\n"
            f"  s.close()\n"
            f"t = time.perf_counter()\n"
            f"for i in range(200): one(ADDR, REQ)\n"
            f"print((time.perf_counter() - t) / 200 * 1e6)\n")
    host_loop = loop.replace("ADDR", f"('127.0.0.1', {port})").replace(
        "REQ", "b'GET /small HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'")
    sandbox_loop = loop.replace("ADDR", "('127.0.0.1', 3128)").replace(
        "REQ", f"b'GET http://bench.test:{port}/small HTTP/1.1\\r\\nHost: bench.test\\r\\n\\r\\n'")
    per_direct = statistics.median(float(subprocess.run(["python3", "-c", host_loop], capture_output=True,
                                                        text=True, check=True).stdout) for _ in range(3))
    per_proxy = statistics.median(float(subprocess.run([AEGIS, "run", *net, "--", "python3", "-c", sandbox_loop],
                                                       capture_output=True, text=True, check=True).stdout)
                                  for _ in range(3))
    print("# Aegis egress proxy bench\n")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, kernel {os.uname().release}, "
          f"nproc {os.cpu_count()}\n")
    print("| measurement | direct (host) | through the proxy (sandbox) | ratio / added |")
    print("|---|---:|---:|---:|")
    print(f"| 1 GiB download, MB/s (median of 3) | {d / 1e6:.0f} | {p / 1e6:.0f} | {p / d * 100:.0f}% |")
    print(f"| new connection + small request, µs (mean of 200, median of 3) | {per_direct:.0f} | "
          f"{per_proxy:.0f} | +{per_proxy - per_direct:.0f} µs |")
    print()
    print(f"- throughput >= 80% of direct: {'PASS' if p >= 0.8 * d else 'MISS'}")
    print(f"- <= 1 ms added per connection: {'PASS' if per_proxy - per_direct <= 1000 else 'MISS'}")
    lsock.close()


if __name__ == "__main__":
    sys.exit(main())
