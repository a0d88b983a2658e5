"""aegis mcp (issue 9): the MCP server on stdio.

The official TypeScript SDK's client runs a whole session (tests/mcp/
client.mjs); the raw protocol is driven from here, line by line: every
JSON-RPC error it must give, the lifecycle, version negotiation, a line
over the limit, and after each of them a server that still answers. The
file tools get the traversal corpus (HOSTILE.md A-07, E-05) and a
symlink swap race (E-06); requests with duplicate keys, NULs, wrong types
and unknown fields are refused (A-01, A-02, A-03, A-04); a secret's value
never comes back (S-01); the server has no privilege of its own (A-10).
`aegis mcp install` is checked against a Claude Code config file."""
import base64
import json
import os
import select
import stat
import subprocess
import tempfile
import time
import uuid

import pytest

from conftest import AEGIS, ROOT, SLOW, free_port, run, wait_instance

MCP_DIR = os.path.join(ROOT, "tests", "mcp")
VERSIONS = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"]


class Mcp:
    """One `aegis mcp` process and the lines it answers."""

    def __init__(self, env, *args, prefix=(), binary=AEGIS):
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen([*prefix, binary, "mcp", *args], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=self.err, env=env)
        self.buf = b""
        self.ids = 100

    def send(self, msg):
        line = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
        self.p.stdin.write(line + b"\n")
        self.p.stdin.flush()

    def recv(self, timeout=60):
        """The next line, which must be one JSON-RPC 2.0 answer."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, f"no answer within {timeout} s; stderr: {self.stderr()}"
            if select.select([self.p.stdout], [], [], left)[0]:
                chunk = os.read(self.p.stdout.fileno(), 1 << 20)
                assert chunk, f"the server closed its stdout; stderr: {self.stderr()}"
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        msg = json.loads(line)
        assert msg["jsonrpc"] == "2.0" and "id" in msg and ("result" in msg) != ("error" in msg), msg
        return msg

    def silent(self, seconds=0.3):
        """Nothing comes out for a while (a notification is not answered)."""
        assert not self.buf and not select.select([self.p.stdout], [], [], seconds)[0], self.buf

    def request(self, method, params=None):
        self.ids += 1
        msg = {"jsonrpc": "2.0", "id": self.ids, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        answer = self.recv()
        assert answer["id"] == self.ids, answer
        return answer

    def init(self, version="2025-11-25"):
        r = self.request("initialize", {"protocolVersion": version, "capabilities": {},
                                        "clientInfo": {"name": "pytest", "version": "1"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return r["result"]

    def call(self, tool, **args):
        """tools/call → its result (a tool error is a result too)."""
        r = self.request("tools/call", {"name": tool, "arguments": args})
        assert "result" in r, r
        return r["result"]

    def ok(self, tool, **args):
        r = self.call(tool, **args)
        assert not r.get("isError"), r["content"][0]["text"]
        return r["structuredContent"]

    def fails(self, tool, **args):
        r = self.call(tool, **args)
        assert r.get("isError") is True, r
        return r["content"][0]["text"]

    def alive(self):
        assert self.request("ping")["result"] == {}

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")[-2000:]

    def close(self):
        self.p.stdin.close()
        assert self.p.wait(timeout=30) == 0, self.stderr()


@pytest.fixture
def mcp(daemon_env):
    """An initialized server on a private daemon."""
    m = Mcp(daemon_env)
    m.init()
    yield m
    m.close()


def error_of(answer, code):
    assert "error" in answer and answer["error"]["code"] == code, answer
    return answer["error"]["message"]


# --- the SDK's client -------------------------------------------------------

@pytest.fixture(scope="session")
def sdk():
    """@modelcontextprotocol/sdk as package-lock.json pins it (npm ci)."""
    p = run([os.path.join(MCP_DIR, "setup.sh")], timeout=600)
    assert p.returncode == 0, p.stderr
    return MCP_DIR


def test_sdk_client_full_session(daemon_env, sdk):
    canary = "CANARY-" + uuid.uuid4().hex
    assert run([AEGIS, "secret", "set", "MCP_KEY"], env=daemon_env, input=canary).returncode == 0
    env = dict(daemon_env, AEGIS_BIN=AEGIS, AEGIS_MCP_SECRET="MCP_KEY", AEGIS_MCP_CANARY=canary)
    p = run(["node", os.path.join(sdk, "client.mjs")], env=env, cwd=sdk, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "tool calls checked" in p.stdout
    assert "Sanitizer" not in p.stderr, p.stderr   # the server's stderr is inherited (ASan build)
    assert canary not in p.stdout + p.stderr
    log = os.path.join(os.path.dirname(daemon_env["AEGIS_SOCKET"]), "aegisd.log")
    assert canary not in open(log).read()


# --- the protocol, raw ----------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_version_negotiation(daemon_env, version):
    m = Mcp(daemon_env)
    r = m.init(version)
    assert r["protocolVersion"] == version
    assert r["capabilities"] == {"tools": {"listChanged": False}}
    assert r["serverInfo"]["name"] == "aegis" and r["instructions"]
    assert len(m.request("tools/list")["result"]["tools"]) == 14
    res = m.call("run", argv=["echo", "hi"])
    # structuredContent came with 2025-06-18: older clients get text only
    assert ("structuredContent" in res) == (version >= "2025-06-18"), res
    assert res["content"][0]["text"].startswith("exit 0")
    m.close()


def test_unknown_version_gets_our_newest(daemon_env):
    m = Mcp(daemon_env)
    assert m.init("1999-01-01")["protocolVersion"] == VERSIONS[0]
    m.close()


def test_requests_before_initialize(daemon_env):
    m = Mcp(daemon_env)
    assert "initialize first" in error_of(m.request("tools/list"), -32600)
    assert "initialize first" in error_of(m.request("tools/call", {"name": "run", "arguments": {"argv": ["true"]}}),
                                          -32600)
    m.alive()   # ping is allowed before
    error_of(m.request("initialize", {"capabilities": {}}), -32602)   # no protocolVersion
    m.init()
    error_of(m.request("initialize", {"protocolVersion": VERSIONS[0]}), -32600)   # twice
    m.alive()
    m.close()


def test_json_rpc_errors(mcp):
    """Each wrong message gets its error, and the server goes on (A-01, A-04)."""
    mcp.send(b'{"jsonrpc": "2.0", "id": 1, "method": "ping"')      # malformed
    assert "Parse error" in error_of(r := mcp.recv(), -32700) and r["id"] is None
    mcp.send(b'\xff\xfe{"jsonrpc": "2.0", "id": 2, "method": "ping"}')   # not UTF-8
    error_of(mcp.recv(), -32700)
    mcp.send(b'{"jsonrpc": "2.0", "id": 3, "id": 4, "method": "ping"}')  # duplicate key
    error_of(mcp.recv(), -32700)
    mcp.send(b"[" * 100000)                                          # depth bomb
    error_of(mcp.recv(), -32700)
    mcp.send({"jsonrpc": "2.0", "id": 5})                            # no method
    assert error_of(r := mcp.recv(), -32600) and r["id"] == 5
    mcp.send({"id": 6, "method": "ping"})                            # no jsonrpc
    assert error_of(r := mcp.recv(), -32600) and r["id"] == 6
    mcp.send({"jsonrpc": "1.0", "id": 7, "method": "ping"})
    error_of(mcp.recv(), -32600)
    mcp.send({"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"})   # id neither string nor integer
    assert error_of(r := mcp.recv(), -32600) and r["id"] is None
    mcp.send({"jsonrpc": "2.0", "id": 8, "method": 42})
    error_of(mcp.recv(), -32600)
    mcp.send([{"jsonrpc": "2.0", "id": 9, "method": "ping"}])        # a batch
    assert "batch" in error_of(mcp.recv(), -32600)
    mcp.send(b'"just a string"')
    error_of(mcp.recv(), -32600)
    assert "nope" in error_of(mcp.request("nope"), -32601)
    error_of(mcp.request("resources/list"), -32601)                  # a capability we do not have
    error_of(mcp.request("tools/list", [1, 2]), -32602)              # params not an object
    error_of(mcp.request("tools/list", {"cursor": 5}), -32602)
    # tools/call: the request's shape is a protocol error ...
    error_of(mcp.request("tools/call", {}), -32602)
    error_of(mcp.request("tools/call", {"name": 3}), -32602)
    error_of(mcp.request("tools/call", {"name": "run", "arguments": ["echo"]}), -32602)
    assert "Unknown tool" in error_of(mcp.request("tools/call", {"name": "rm_rf", "arguments": {}}), -32602)
    # ... what the tool's schema refuses is a tool error the model reads (2025-11-25, SEP-1303)
    assert "argv" in mcp.fails("run")                                 # required
    assert "argv: must be an array" in mcp.fails("run", argv="echo hi")
    assert "argv[1]: must be a string" in mcp.fails("run", argv=["echo", 1])
    assert "unknown field \"argvv\"" in mcp.fails("run", argv=["true"], argvv=["x"])
    assert "timeout_ms: must be an integer" in mcp.fails("run", argv=["true"], timeout_ms=1.5)
    assert "at most 3600000" in mcp.fails("run", argv=["true"], timeout_ms=10**12)
    assert "net: must be one of" in mcp.fails("run", argv=["true"], net="host")
    assert "NUL" in mcp.fails("file_read", name="x", path="a\u0000b")
    assert "env.A: must be a string" in mcp.fails("run", argv=["true"], env={"A": 1})
    mcp.alive()


def test_notifications_get_no_answer(mcp):
    for method in ("notifications/initialized", "notifications/cancelled", "notifications/whatever"):
        mcp.send({"jsonrpc": "2.0", "method": method, "params": {"requestId": 1}})
    mcp.send({"jsonrpc": "2.0", "method": "notifications/x", "params": "not an object"})
    mcp.send({"jsonrpc": "2.0", "id": 1, "result": {}})    # an answer to us: we asked nothing
    mcp.send(b"")                                           # empty lines are no message
    mcp.send(b"   \r")
    mcp.silent()
    mcp.alive()


def test_line_limits(mcp):
    """A 10 MiB line is refused once and skipped; 7 MiB is fine (A-03)."""
    big = {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "x" * (10 << 20)}}
    mcp.send(big)
    r = mcp.recv()
    assert "8 MiB" in error_of(r, -32600) and r["id"] is None
    mcp.silent()
    mcp.alive()
    big["params"]["pad"] = "x" * (7 << 20)
    big["id"] = 2
    mcp.send(big)
    assert mcp.recv() == {"jsonrpc": "2.0", "id": 2, "result": {}}
    # two messages in one write, the second without its newline until later
    mcp.p.stdin.write(b'{"jsonrpc":"2.0","id":3,"method":"ping"}\n{"jsonrpc":"2.0","id":4,')
    mcp.p.stdin.flush()
    assert mcp.recv()["id"] == 3
    mcp.send(b'"method":"ping"}')
    assert mcp.recv()["id"] == 4


def test_without_stderr(daemon_env):
    """A host that closes the server's stderr: it still serves, and only protocol reaches stdout."""
    p = subprocess.Popen(f"exec {AEGIS} mcp 2>&-", shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         env=daemon_env)
    out, _ = p.communicate(b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}\n'
                           b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"run","arguments":'
                           b'{"argv":["sh","-c","echo to-stderr >&2"]}}}\n', timeout=60)
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x["id"] for x in lines] == [1, 2] and p.returncode == 0
    assert lines[1]["result"]["structuredContent"]["stderr"] == "to-stderr\n"


def test_eof_ends_the_server(daemon_env):
    m = Mcp(daemon_env)
    m.init()
    m.p.stdin.write(b'{"jsonrpc":"2.0","id":9,"method":"ping"}')   # no newline, then EOF
    m.p.stdin.close()
    assert m.recv()["id"] == 9
    assert m.p.wait(timeout=10) == 0


# --- run --------------------------------------------------------------------

def test_run_limits_and_failures(mcp, tmp_path):
    s = mcp.ok("run", argv=["sleep", "10"], timeout_ms=300)
    assert s["timed_out"] and s["exit_code"] == 124 and s["limit"] == "timeout"
    s = mcp.ok("run", argv=["sh", "-c", "head -c 5000 /dev/zero | tr '\\0' a; echo e >&2"], max_bytes=100)
    assert s["stdout"] == "a" * 100 and s["stdout_truncated"] and not s["stderr_truncated"]
    s = mcp.ok("run", argv=["sh", "-c", "echo é€; cat /proc/self/status | grep -c NoNewPrivs"])
    assert s["stdout"] == "é€\n1\n"
    assert "not found" in mcp.fails("run", argv=["no-such-command-here"])
    assert "--memory" in mcp.fails("run", argv=["true"], memory="lots")
    assert "needs --net allow" in mcp.fails("run", argv=["true"], allow=["example.com"])
    # a policy may not take a model onto the host's network
    pol = tmp_path / "host.json"
    pol.write_text(json.dumps({"network": {"mode": "host"}}))
    assert "host" in mcp.fails("run", argv=["true"], policy=str(pol))
    assert "host" in mcp.fails("instance_start", name="h", argv=["true"], policy=str(pol))
    s = mcp.ok("run", argv=["sh", "-c", "cat; echo x"])   # stdin is /dev/null, not the protocol
    assert s["stdout"] == "x\n"
    mcp.alive()


def test_a_hanging_or_crashing_run_does_not_take_the_server_down(mcp, daemon_env):
    """The run's child blocks before its sandbox starts (a delete holds
    the workspace it needs): the server kills it once the timeout and its
    grace are over, and answers; a child that crashes is an answer too."""
    import fcntl
    import signal
    assert run([AEGIS, "workspace", "create", "held"], env=daemon_env).returncode == 0
    lock = open(os.path.join(daemon_env["AEGIS_STATE_DIR"], "workspaces", "held", "lock"), "r+")
    fcntl.lockf(lock, fcntl.LOCK_EX, 1, 0)    # byte 0, as a delete takes it

    def children():
        kids = open(f"/proc/{mcp.p.pid}/task/{mcp.p.pid}/children").read().split()
        return [int(k) for k in kids]

    mcp.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
              "params": {"name": "run", "arguments": {"argv": ["true"], "workspace": "held"}}})
    deadline = time.monotonic() + 10
    while not children():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(children()[0], signal.SIGSEGV)
    r = mcp.recv()
    assert r["id"] == 1 and r["result"]["isError"], r
    mcp.alive()
    start = time.monotonic()
    text = mcp.fails("run", argv=["true"], workspace="held", timeout_ms=1)
    took = time.monotonic() - start
    assert "killed" in text and 9 < took < 20, (text, took)
    assert not children()
    mcp.alive()
    lock.close()
    assert mcp.ok("run", argv=["true"], workspace="held")["exit_code"] == 0


def test_images(mcp, daemon_env, tmp_path):
    """run and instance_start with an image from the store; one that is
    not there is pulled, and a failed pull says why."""
    import ocilayout
    ocilayout.build(str(tmp_path / "img"), [ocilayout.base_entries() + [("hello.txt", "file", b"from the image\n")]],
                    env=["PATH=/usr/bin:/bin", "FROM_IMAGE=yes"], workdir="/")
    p = run([AEGIS, "image", "import", "--quiet", "--name", "test/mcp:1", str(tmp_path / "img")], env=daemon_env)
    assert p.returncode == 0, p
    s = mcp.ok("run", argv=["sh", "-c", "cat /hello.txt; echo $FROM_IMAGE"], image="test/mcp:1")
    assert s["stdout"] == "from the image\nyes\n", s
    s = mcp.ok("instance_start", name="img", argv=["sleep", "infinity"], image="test/mcp:1")
    assert s["image"].endswith("test/mcp:1") and s["image_digest"].startswith("sha256:"), s
    assert mcp.ok("exec", name="img", argv=["cat", "/hello.txt"])["stdout"] == "from the image\n"
    text = mcp.fails("run", argv=["true"], image="127.0.0.1:1/none:1")
    assert "pull failed" in text and "127.0.0.1:1" in text, text
    mcp.fails("instance_start", name="img2", argv=["true"], image="127.0.0.1:1/none:1")
    assert "UPPER CASE" in mcp.fails("run", argv=["true"], image="UPPER CASE")


def test_run_and_files_in_a_named_workspace(mcp, daemon_env):
    assert run([AEGIS, "workspace", "create", "proj"], env=daemon_env).returncode == 0
    mcp.ok("file_write", workspace="proj", path="src/main.sh", content="echo built > out.txt\n", create_dirs=True)
    s = mcp.ok("run", argv=["sh", "src/main.sh"], workspace="proj")
    assert s["exit_code"] == 0
    assert mcp.ok("file_read", workspace="proj", path="out.txt")["content"] == "built\n"
    s = mcp.ok("run", argv=["sh", "-c", "echo no > out.txt"], workspace="proj", workspace_ro=True)
    assert s["exit_code"] != 0
    assert "give either" in mcp.fails("file_list", workspace="proj", name="x")
    assert "not a workspace name" in mcp.fails("file_list", workspace="../proj")
    assert "no workspace" in mcp.fails("file_list", workspace="nothere")


def test_logs_tail_wait_and_end(mcp, daemon_env):
    mcp.ok("instance_start", name="quiet", argv=["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; "
                                                 "echo oops >&2; sleep infinity"])
    for _ in range(100):
        s = mcp.ok("logs", name="quiet", tail=2)
        if "oops" in s["stderr"]:
            break
        time.sleep(0.05)
    assert s["stdout"] == "line4\nline5\n" and s["stderr"] == "oops\n", s
    assert "[stderr] oops" in mcp.call("logs", name="quiet")["content"][0]["text"]
    assert mcp.ok("logs", name="quiet", stream="stderr")["stdout"] == ""
    s = mcp.ok("logs", name="quiet", max_bytes=12)
    assert s["truncated"] and len(s["stdout"] + s["stderr"]) <= 12, s
    # nothing new: the whole wait, and it says so
    start = time.monotonic()
    r = mcp.call("logs", name="quiet", since=s["next_since"], wait_ms=1000)
    assert 0.9 < time.monotonic() - start < 5 and "nothing new" in r["content"][0]["text"], r
    assert r["structuredContent"]["ended"] is False
    # an instance that ends: the wait stops there
    mcp.ok("instance_start", name="brief", argv=["sh", "-c", "sleep 0.5; echo bye"], wait_ms=0)
    start = time.monotonic()
    s = mcp.ok("logs", name="brief", tail=0, wait_ms=20000)
    assert time.monotonic() - start < 10 and "bye" in s["stdout"], s
    assert "since" in mcp.fails("logs", name="quiet", since="yesterday")
    assert "no instance" in mcp.fails("logs", name="ghost")


def test_instance_start_on_the_vm_backend(daemon_env):
    """instance_start's backend "vm" makes a vm instance: its info says
    so and its command runs on the guest's kernel, not the host's. Any
    other value is refused naming the field, and nothing is made."""
    build = os.path.dirname(AEGIS)
    p = run([os.path.join(ROOT, "scripts", "vm-guest.sh"), build], timeout=600)
    assert p.returncode == 0, p.stderr
    with open(os.path.join(build, "vm", "release")) as f:
        guest_release = f.read().strip()
    assert guest_release != os.uname().release
    env = dict(daemon_env, AEGIS_VM_ACCEL=os.environ.get("AEGIS_TEST_VM_ACCEL", "tcg"))
    m = Mcp(env)
    m.init()
    text = m.fails("instance_start", name="xen", argv=["true"], backend="xen")
    assert text == 'invalid arguments for instance_start: backend: must be one of "ns", "vm"', text
    assert "no instance" in m.fails("instance_info", name="xen")
    s = m.ok("instance_start", name="guest", argv=["sh", "-c", "uname -r; sleep infinity"], backend="vm",
             idle_pause_s=0)
    assert s["backend"] == "vm", s
    assert m.ok("instance_info", name="guest")["backend"] == "vm"
    s = m.ok("logs", name="guest", wait_ms=60000)  # the first start builds the guest's snapshot: seconds
    for _ in range(120):
        if s["stdout"]:
            break
        s = m.ok("logs", name="guest", wait_ms=5000)
    assert s["stdout"] == guest_release + "\n", s
    # and the default is the daemon's AEGIS_BACKEND, else ns
    default = os.environ.get("AEGIS_BACKEND", "ns")
    assert m.ok("instance_start", name="host", argv=["sleep", "infinity"])["backend"] == default
    m.ok("instance_delete", name="guest")
    # the run tool takes it too: a one-shot run in a guest, and on the host
    s = m.ok("run", argv=["uname", "-r"], backend="vm", timeout_ms=120000)
    assert s["stdout"] == guest_release + "\n", s
    s = m.ok("run", argv=["uname", "-r"], backend="ns")
    assert s["stdout"] == os.uname().release + "\n", s
    assert "backend" in m.fails("run", argv=["true"], backend="xen")
    m.close()


# --- files: the traversal corpus --------------------------------------------

@pytest.fixture
def inst(mcp, daemon_env):
    """An instance with symlinks out of its workspace made inside it."""
    s = mcp.ok("instance_start", name="files", argv=["sleep", "infinity"])
    assert s["state"] == "running", s
    wait_instance(daemon_env, "files", "running")
    r = mcp.ok("exec", name="files", argv=["sh", "-c", "cd /workspace && mkdir d && echo inside > d/f && "
                                           "ln -s / root && ln -s .. up && ln -s /etc/passwd pw && "
                                           "ln -s d/f good && ln -s ../../.. far && ln -s d dirlink"])
    assert r["exit_code"] == 0, r
    ws = os.path.join(daemon_env["AEGIS_STATE_DIR"], "instances", "files", "workspace")
    assert os.path.islink(os.path.join(ws, "root"))
    return ws


def test_file_traversal_corpus(mcp, inst):
    """Nothing outside the workspace is read or written (A-07, E-05); the
    same paths outside the workspace do reach those files."""
    assert open("/etc/passwd").read().startswith("root:x:0:")     # the probe's target is real
    escapes = ["../x", "..", "/etc/passwd", "a/../../x", "d/../../x", "root/etc/passwd", "up/config.json",
               "pw", "far/etc/passwd", "/workspace/../etc/passwd", "//etc/passwd", "root", "up",
               "x" * 300, "d/" + "y" * 256, "a/" * 2100 + "b", "/proc/self/root/etc/passwd"]
    for p in escapes:
        text = mcp.fails("file_read", name="files", path=p)
        assert "root:x:0:" not in text, (p, text)
    for p in ["a\u0000b", "d/f\u0000"]:
        assert "NUL" in mcp.fails("file_read", name="files", path=p)
    # symlinks that stay inside are fine, and /workspace/... is the same file
    assert mcp.ok("file_read", name="files", path="good")["content"] == "inside\n"
    assert mcp.ok("file_read", name="files", path="/workspace/dirlink/f")["content"] == "inside\n"
    assert mcp.ok("file_read", name="files", path="./d/f")["content"] == "inside\n"
    assert "directory" in mcp.fails("file_read", name="files", path="d")
    # lists: symlinks shown, not followed
    ents = {e["path"]: e for e in mcp.ok("file_list", name="files", recursive=True)["entries"]}
    assert ents["root"]["type"] == "symlink" and ents["root"]["target"] == "/"
    assert "root/etc" not in ents and "up/config.json" not in ents
    for p in ["root", "up", "far", "/etc", "../", "root/etc"]:
        mcp.fails("file_list", name="files", path=p)


def test_file_writes_stay_inside(mcp, inst, daemon_env):
    tag = "aegis-mcp-escape-" + uuid.uuid4().hex[:8]
    inst_dir = os.path.dirname(inst)
    for p in [f"../{tag}", f"/tmp/{tag}", f"root/tmp/{tag}", f"up/{tag}", f"far/tmp/{tag}", f"d/../../{tag}",
              f"/workspace/../{tag}", f"dirlink/../../{tag}"]:
        mcp.fails("file_write", name="files", path=p, content="escaped", create_dirs=True)
    assert not os.path.exists(f"/tmp/{tag}") and not os.path.exists(f"/{tag}")
    assert not os.path.exists(os.path.join(inst_dir, tag))
    assert not any(tag in f for f in os.listdir(os.path.dirname(inst_dir)))
    # the same writes inside work; a symlink at the name is replaced, not written through
    assert mcp.ok("file_write", name="files", path="pw", content="mine\n")["bytes"] == 5
    assert os.path.isfile(os.path.join(inst, "pw")) and not os.path.islink(os.path.join(inst, "pw"))
    assert open("/etc/passwd").read().startswith("root:")
    assert "exists" in mcp.fails("file_write", name="files", path="d/f", content="x", overwrite=False)
    assert "create_dirs" in mcp.fails("file_write", name="files", path="new/dir/f", content="x")
    mcp.ok("file_write", name="files", path="new/dir/f", content="x", create_dirs=True)
    # the sandbox owns what we wrote: it sees root's files and can change them
    r = mcp.ok("exec", name="files", argv=["sh", "-c", "stat -c %u /workspace/new/dir/f && echo y >> "
                                           "/workspace/new/dir/f && cat /workspace/new/dir/f"])
    assert r["stdout"] == "0\nxy\n", r
    assert not [f for f in os.listdir(inst) if f.startswith(".aegis-mcp-")]   # no temp file left
    # sizes: a write over 4 MiB is refused, a read is bounded and goes on from an offset
    big = base64.b64encode(b"z" * ((4 << 20) + 1)).decode()
    assert "limit" in mcp.fails("file_write", name="files", path="big", content=big, encoding="base64")
    mcp.ok("file_write", name="files", path="big", content="0123456789" * 10)
    s = mcp.ok("file_read", name="files", path="big", max_bytes=30, offset=95)
    assert s["content"] == "56789" and not s["truncated"] and s["size"] == 100
    s = mcp.ok("file_read", name="files", path="big", max_bytes=30)
    assert s["content"] == "012345678901234567890123456789" and s["truncated"]
    assert "not base64" in mcp.fails("file_write", name="files", path="b", content="%%%", encoding="base64")


def test_file_writes_under_a_swapping_symlink(mcp, daemon_env):
    """The sandbox flips a directory and a symlink to / under the name we
    write through (E-06): every write lands inside or fails, none outside."""
    tag = "aegis-mcp-race-" + uuid.uuid4().hex[:8]
    flip = "while :; do mkdir -p /workspace/flip; rm -rf /workspace/flip; ln -s / /workspace/flip; rm -f /workspace/flip; done"
    assert mcp.ok("instance_start", name="race", argv=["sh", "-c", flip])["state"] == "running"
    landed = refused = 0
    # In a TCG guest the loop's rm -rf (a 9p round trip per entry) is slower
    # than our writes: one landing between its last unlink and its rmdir
    # fails the rmdir, and the loop never got round to the link while we
    # wrote every few ms (857 landed, 0 refused). Written more slowly there,
    # the flip goes round as on the host.
    pace = 0.05 if SLOW > 1 else 0
    for i in range(1000):
        time.sleep(pace)
        r = mcp.call("file_write", name="race", path=f"flip/{tag}-{i}", content="x")
        landed += not r.get("isError")
        refused += "leads out" in r["content"][0]["text"]
        r = mcp.call("file_read", name="race", path="flip/etc/passwd")
        assert r.get("isError") or "root:x:0:" not in json.dumps(r)
        if i >= 300 and landed and refused:
            break
    assert not [f for f in os.listdir("/") if f.startswith(tag)]
    # both sides of the flip were met: the race was run, not missed
    assert landed and refused, (landed, refused)
    mcp.ok("instance_delete", name="race")
    # the same write when flip is a plain directory does work
    mcp.ok("instance_start", name="calm", argv=["sh", "-c", "mkdir /workspace/flip; sleep infinity"])
    wait_instance(daemon_env, "calm", "running")
    for _ in range(50):
        if not mcp.call("file_write", name="calm", path=f"flip/{tag}", content="x").get("isError"):
            break
        time.sleep(0.1)
    assert mcp.ok("file_read", name="calm", path=f"flip/{tag}")["content"] == "x"


def test_read_only_workspace_refuses_writes(mcp, daemon_env):
    assert run([AEGIS, "workspace", "create", "ro-ws"], env=daemon_env).returncode == 0
    mcp.ok("file_write", workspace="ro-ws", path="keep.txt", content="kept\n")
    mcp.ok("instance_start", name="ro", argv=["sleep", "infinity"], workspace="ro-ws", workspace_ro=True)
    info = mcp.ok("instance_info", name="ro")
    assert info["workspace"] == "ro-ws" and info["workspace_ro"] is True
    assert "read-only" in mcp.fails("file_write", name="ro", path="x", content="no")
    assert mcp.ok("file_read", name="ro", path="keep.txt")["content"] == "kept\n"
    assert "no instance" in mcp.fails("file_read", name="ghost", path="x")
    # exposed ports listen on the host's loopback only
    port = free_port()
    s = mcp.ok("instance_start", name="exp", argv=["sleep", "infinity"], expose=[{"host_port": port, "guest_port": 80}])
    assert s["expose"] == [f"127.0.0.1:{port}:80"], s
    assert "host_port" in mcp.fails("instance_start", name="exp2", argv=["true"], expose=[{"host_port": 0, "guest_port": 1}])
    assert "instance name" in mcp.fails("file_read", name="../ghost", path="x")


# --- host directories as workspaces ---------------------------------------

def test_host_directories_need_a_workspace_root(daemon_env, tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "proj").mkdir(parents=True)
    outside.mkdir()
    (root / "out").symlink_to(outside)
    os.chown(root / "proj", 4321, 4321)
    m = Mcp(daemon_env)
    m.init()
    assert "--workspace-root" in m.fails("run", argv=["true"], workspace=str(root / "proj"))
    m.close()
    m = Mcp(daemon_env, "--workspace-root", str(root))
    m.init()
    s = m.ok("run", argv=["sh", "-c", "echo made > /workspace/m && stat -c %u /workspace/m"],
             workspace=str(root / "proj"))
    assert s["stdout"] == "0\n" and os.stat(root / "proj" / "m").st_uid == 4321
    for bad in [str(outside), str(root / "out"), "/etc", str(root / "proj" / ".." / ".." / "outside"), "relative/x"]:
        m.fails("run", argv=["true"], workspace=bad)
        m.fails("instance_start", name="hostws", argv=["true"], workspace=bad)
    # an instance on a host directory: files written belong to its owner
    m.ok("instance_start", name="hostws", argv=["sleep", "infinity"], workspace=str(root / "proj"))
    m.ok("file_write", name="hostws", path="w.txt", content="w")
    assert os.stat(root / "proj" / "w.txt").st_uid == 4321
    assert stat.S_IMODE(os.stat(root / "proj" / "w.txt").st_mode) == 0o644
    m.ok("instance_delete", name="hostws")
    assert (root / "proj" / "w.txt").exists()
    m.close()


# --- no privilege of its own ------------------------------------------------

def test_the_server_has_no_privilege_of_its_own(daemon_env):
    """As another user, the server cannot use root's daemon nor its
    instances' files: it is a client like the CLI (A-10)."""
    assert run([AEGIS, "up"], env=daemon_env).returncode == 0
    assert run([AEGIS, "instance", "start", "--name", "mine", "--", "sleep", "infinity"],
               env=daemon_env).returncode == 0
    m = Mcp(daemon_env, prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"))
    m.init()
    for tool, args in [("instance_list", {}), ("instance_info", {"name": "mine"}),
                       ("file_read", {"name": "mine", "path": "x"}), ("exec", {"name": "mine", "argv": ["id"]}),
                       ("instance_delete", {"name": "mine"}), ("secret_list", {})]:
        text = m.fails(tool, **args)
        assert "denied" in text or "not ours" in text or "owned" in text or "reach" in text, (tool, text)
    m.close()
    assert wait_instance(daemon_env, "mine", "running")


# --- aegis mcp install ----------------------------------------------------

def test_install_and_uninstall(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    cfg = home / ".claude.json"
    before = {"numStartups": 3, "projects": {"/p": {"mcpServers": {"x": {}}}},
              "mcpServers": {"other": {"type": "stdio", "command": "other", "args": [], "env": {}}}}
    cfg.write_text(json.dumps(before))
    os.chmod(cfg, 0o600)
    env = dict(os.environ, HOME=str(home))
    env.pop("CLAUDE_CONFIG_DIR", None)
    p = run([AEGIS, "mcp", "install"], env=env)
    assert p.returncode == 0, p.stderr
    assert "registered" in p.stdout and '"mcpServers"' in p.stdout   # the snippet for other hosts
    after = json.loads(cfg.read_text())
    assert after["mcpServers"]["aegis"] == {"type": "stdio", "command": os.path.realpath(AEGIS),
                                            "args": ["mcp"], "env": {}}
    assert after["mcpServers"]["other"] == before["mcpServers"]["other"]
    assert {k: v for k, v in after.items() if k != "mcpServers"} == \
        {k: v for k, v in before.items() if k != "mcpServers"}
    assert stat.S_IMODE(os.stat(cfg).st_mode) == 0o600
    p = run([AEGIS, "mcp", "install", "--workspace-root", str(tmp_path)], env=env)
    assert "updated" in p.stdout
    assert json.loads(cfg.read_text())["mcpServers"]["aegis"]["args"] == \
        ["mcp", "--workspace-root", str(tmp_path)]
    assert run([AEGIS, "mcp", "uninstall"], env=env).returncode == 0
    assert json.loads(cfg.read_text()) == before
    assert "nothing to do" in run([AEGIS, "mcp", "uninstall"], env=env).stdout
    assert not [f for f in os.listdir(home) if f != ".claude.json"]   # no temp file left


def test_install_refuses_a_malformed_config(tmp_path):
    cfg = tmp_path / ".claude.json"
    for text in ['{"mcpServers": {', '[]', '{"mcpServers": []}', '']:
        cfg.write_text(text)
        p = run([AEGIS, "mcp", "install"], env=dict(os.environ, HOME=str(tmp_path), CLAUDE_CONFIG_DIR=""))
        assert p.returncode != 0 and "left as it is" in p.stderr, p
        assert cfg.read_text() == text
        p = run([AEGIS, "mcp", "uninstall"], env=dict(os.environ, HOME=str(tmp_path), CLAUDE_CONFIG_DIR=""))
        assert p.returncode != 0 and cfg.read_text() == text


def test_install_where_claude_code_looks(tmp_path):
    # no file yet: made private; CLAUDE_CONFIG_DIR moves it
    conf = tmp_path / "conf"
    conf.mkdir()
    env = dict(os.environ, HOME=str(tmp_path / "nohome"), CLAUDE_CONFIG_DIR=str(conf))
    assert run([AEGIS, "mcp", "install"], env=env).returncode == 0
    assert stat.S_IMODE(os.stat(conf / ".claude.json").st_mode) == 0o600
    assert "aegis" in json.loads((conf / ".claude.json").read_text())["mcpServers"]
    # a symlinked dotfile is written at its target, the link kept
    dots = tmp_path / "dotfiles"
    dots.mkdir()
    (dots / "claude.json").write_text('{"theme": "dark"}')
    home = tmp_path / "home"
    home.mkdir()
    (home / ".claude.json").symlink_to(dots / "claude.json")
    env = dict(os.environ, HOME=str(home), CLAUDE_CONFIG_DIR="")
    assert run([AEGIS, "mcp", "install"], env=env).returncode == 0
    assert os.path.islink(home / ".claude.json")
    assert json.loads((dots / "claude.json").read_text())["theme"] == "dark"
    # --print writes nothing
    p = run([AEGIS, "mcp", "install", "--print", "--config", str(tmp_path / "none.json")], env=env)
    assert p.returncode == 0 and '"aegis"' in p.stdout and not (tmp_path / "none.json").exists()
