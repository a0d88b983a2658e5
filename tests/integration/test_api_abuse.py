"""API abuse (issue 5; HOSTILE.md A-01, A-02, A-04, A-05, A-08, A-09): malformed and hostile
requests get a clear 4xx and the daemon keeps answering health requests in
time throughout."""
import json
import os
import random
import resource
import socket
import threading
import time

import pytest

from conftest import AEGIS, api, run

# Documents every JSON parser must refuse, in the spirit of JSONTestSuite's
# n_* cases: structure, numbers, strings, escapes, encodings, trailers.
INVALID = [
    b"", b" ", b"{", b"}", b"[", b"]", b"{]", b"[}", b'{"a"}', b'{"a":}', b'{"a" 1}', b'{:1}',
    b'{"a":1,}', b'[1,]', b'[,1]', b'[1,,2]', b'{"a":1 "b":2}', b'{"a":1}}', b'{"a":1}x',
    b'{"a":1} {"b":2}', b"{'a':1}", b'{a:1}', b'{"a":undefined}', b'{"a":NaN}', b'{"a":Infinity}',
    b'{"a":-Infinity}', b'{"a":01}', b'{"a":1.}', b'{"a":.1}', b'{"a":1e}', b'{"a":+1}', b'{"a":0x1}',
    b'{"a":1_000}', b'{"a":tru}', b'{"a":True}', b'{"a":nul}', b'{"a":"\\x41"}', b'{"a":"\\u12"}',
    b'{"a":"\\uZZZZ"}', b'{"a":"\\ud800"}', b'{"a":"\\udc00\\ud800"}', b'{"a":"tab\there"}',
    b'{"a":"nl\nhere"}', b'{"a":"\x00"}', b'{"a":"\xff"}', b'{"a":"\xc0\xaf"}', b'{"a":"\xed\xa0\x80"}',
    b'{"a":"unterminated}', b'\xef\xbb\xbf{"a":1}', b'{"a":1}/* c */', b'// c\n{"a":1}',
    b'{"a":[1,2}', b'{"a":{"b":1]}', b'"just a string"', b"5", b"null", b"true",
    b'{"name":"x","name":"y","argv":["true"]}',  # a duplicated key is ambiguous: refused
]


@pytest.fixture
def daemon(daemon_env):
    assert run([AEGIS, "up"], env=daemon_env).returncode == 0
    return daemon_env


def http(env, method, path, body=b"", timeout=10):
    return api(env, method, path, body, timeout)


def healthy(env, within=1.0):
    t = time.monotonic()
    status, body = http(env, "GET", "/v1/health", timeout=within + 1)
    return status == 200 and body == {"status": "ok"} and time.monotonic() - t < within


@pytest.mark.parametrize("path", ["/v1/instances", "/v1/instances/x/exec"])
def test_invalid_json_corpus(daemon, path):
    """A-01, A-04: JSONTestSuite-style n_ documents, duplicate keys, bad UTF-8."""
    for doc in INVALID:
        status, body = http(daemon, "POST", path, doc)
        assert status == 400, (doc, status, body)
        assert body["error"]["code"] in ("invalid_json", "invalid") and body["error"]["message"], (doc, body)
    assert healthy(daemon)


def test_deep_nesting_is_refused_before_parsing(daemon):
    """A-02: depth bombs."""
    for depth in (33, 1000, 900_000):
        doc = b'{"name":"deep","argv":["true"],"env":' + b"[" * depth + b"]" * depth + b"}"
        status, body = http(daemon, "POST", "/v1/instances", doc[: 1 << 20])
        if len(doc) > 1 << 20:
            doc = doc[: 1 << 20]
        assert status == 400 and "nested deeper than 32" in body["error"]["message"], body
    # brackets inside strings are not nesting
    ok = json.dumps({"name": "shallow", "argv": ["echo", "[" * 100], "env": ["A={{{{"]}).encode()
    status, body = http(daemon, "POST", "/v1/instances", ok)
    assert status == 201, body
    assert healthy(daemon)


def test_mutated_requests(daemon):
    """Random byte flips, cuts and splices of a valid request: never a 5xx,
    never a hang, never a crash."""
    rng = random.Random(5)
    base = json.dumps({"name": "m", "argv": ["sleep", "1"], "env": ["A=1"], "cwd": "/tmp"}).encode()
    for i in range(300):
        doc = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            op, at = rng.randint(0, 2), rng.randrange(len(doc))
            if op == 0:
                doc[at] = rng.randrange(256)
            elif op == 1:
                del doc[at:at + rng.randint(1, 8)]
            else:
                doc[at:at] = rng.choice([b"{", b"[", b'"', b"\\", b",", b"\x00", b"\xff", b"1e999"])
        status, body = http(daemon, "POST", "/v1/instances", bytes(doc))
        assert status in (201, 400, 409), (bytes(doc), status, body)
        if status == 201:
            name = json.loads(bytes(doc))["name"]
            assert run([AEGIS, "instance", "delete", name], env=daemon).returncode == 0
        if i % 50 == 0:
            assert healthy(daemon)
    assert healthy(daemon)


@pytest.mark.parametrize("raw", ["..%2F..%2Fetc", "%2E%2E", "a%0Ab", "a%00b", "a%5Cb", "A", "-a", "a" * 64,
                                 "a b", "%F0%9F%92%A3", "a/../b"])
def test_hostile_names_everywhere(daemon, raw):
    """HOSTILE.md A-08: a name is checked before any path is made from it."""
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/exec"), ("GET", "/logs"),
                           ("POST", "/pause"), ("POST", "/start")):
        body = b'{"argv":["true"]}' if suffix == "/exec" else b""
        status, got = http(daemon, method, f"/v1/instances/{raw}{suffix}", body)
        assert status in (400, 404), (raw, suffix, status, got)
    state = os.path.join(daemon["AEGIS_STATE_DIR"], "instances")
    assert os.listdir(state) == [] and not os.path.exists(os.path.join(daemon["AEGIS_STATE_DIR"], "etc"))


def test_delete_racing_exec(daemon):
    assert run([AEGIS, "instance", "start", "--name", "race", "--", "sleep", "600"], env=daemon).returncode == 0
    deadline = time.monotonic() + 10
    while run([AEGIS, "exec", "race", "--", "true"], env=daemon).returncode != 0:
        assert time.monotonic() < deadline
    results = []

    def execs():
        for _ in range(10):
            p = run([AEGIS, "exec", "race", "--", "sh", "-c", "echo x; sleep 0.2"], env=daemon, timeout=30)
            results.append(p)

    ts = [threading.Thread(target=execs) for _ in range(4)]
    [t.start() for t in ts]
    # the delete lands while execs are in flight, once one has finished
    # (an exec in a guest under TCG can take longer than a fixed wait)
    deadline = time.monotonic() + 30
    while not results and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run([AEGIS, "instance", "delete", "race"], env=daemon, timeout=30).returncode == 0
    [t.join() for t in ts]
    for p in results:
        # finished before the delete, cut by it, or refused after it: each said clearly
        assert p.returncode == 0 or p.returncode in (125, 137) and p.stderr.startswith("aegis: "), p
    assert any(p.returncode == 0 for p in results) and any(p.returncode != 0 for p in results)
    assert healthy(daemon)
    assert "race" not in run([AEGIS, "instance", "list"], env=daemon).stdout


def test_connection_flood_and_half_requests(daemon):
    """A-05: more connections than the cap (1024), all stalled mid-request:
    the cap holds, stalled ones are cut at the 10 s timeout, and health is
    answered again after that."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    held = []
    try:
        for i in range(1100):
            s = socket.socket(socket.AF_UNIX)
            s.connect(daemon["AEGIS_SOCKET"])
            try:
                s.sendall(b"POST /v1/instances HTTP/1.1\r\nContent-Length: 100\r\n\r\n{" if i % 2 else b"GE")
            except OSError:
                pass  # over the cap: reset at once
            held.append(s)
        deadline = time.monotonic() + 20
        while True:
            try:
                if healthy(daemon, within=2.0):
                    break
            except (OSError, ValueError, IndexError):
                pass
            assert time.monotonic() < deadline, "the daemon stopped answering"
            time.sleep(0.2)
    finally:
        for s in held:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert healthy(daemon)


def test_a_nul_in_the_url_does_not_shorten_the_name(daemon):
    """HOSTILE.md A-08: "a%00b" decoded naively is the C string "a"; it
    must not reach instance "a"."""
    assert run([AEGIS, "instance", "start", "--name", "a", "--", "sleep", "600"], env=daemon).returncode == 0
    status, body = http(daemon, "DELETE", "/v1/instances/a%00b")
    assert status in (400, 404), body
    status, body = http(daemon, "GET", "/v1/instances/a")
    assert status == 200 and body["name"] == "a", body
