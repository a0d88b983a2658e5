"""Secrets through aegisd (issue 7): set over the API with the value in the
body only, injected into instances that name them (at every start), and a
canary value that is found in no log, audit line, state file, API answer,
daemon log or process argv over an instance's whole life. HOSTILE.md S-01,
S-02, S-03 (secrets) and I-01 (one sandbox reaching into another)."""
import hashlib
import json
import os
import subprocess
import time

import pytest

from conftest import AEGIS, TEST_BACKEND, api, file_data, run, instance_info as info, wait_instance as wait_state

CANARY = "canary-d41e-instance-secret"
CANARY_FILE = "canary-99b0-file-secret"
DIGEST = hashlib.sha256(CANARY.encode()).hexdigest()


@pytest.fixture
def env(daemon_env):
    assert run([AEGIS, "up"], env=daemon_env).returncode == 0
    return daemon_env


def aegis(env, *args, **kw):
    return run([AEGIS, *args], env=env, **kw)




def files_with(root, needle):
    hits = []
    for top, _, files in os.walk(root):
        for f in files:
            path = os.path.join(top, f)
            try:
                if needle in file_data(path):
                    hits.append(path)
            except OSError:
                pass  # sockets, vanished files
    return hits


def argv_with(needle):
    hits = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if needle in fh.read():
                    hits.append(pid)
        except OSError:
            pass
    return hits


def test_api_set_list_delete_never_returns_a_value(env):
    status, body = api(env, "PUT", "/v1/secrets/API_KEY", {"value": CANARY})
    assert (status, body) == (201, {"name": "API_KEY", "status": "created"})
    status, body = api(env, "PUT", "/v1/secrets/API_KEY", {"value": CANARY + "2"})
    assert (status, body["status"]) == (200, "updated")
    status, body = api(env, "GET", "/v1/secrets")
    assert status == 200 and [s["name"] for s in body["secrets"]] == ["API_KEY"]
    assert CANARY not in json.dumps(body)
    # the CLI sees the same store
    p = aegis(env, "secret", "list", "--json")
    assert [s["name"] for s in json.loads(p.stdout)] == ["API_KEY"], p
    # no way to read a value back; no value from the URL
    assert api(env, "GET", "/v1/secrets/API_KEY")[0] == 405
    assert api(env, "POST", "/v1/secrets")[0] == 405
    status, body = api(env, "PUT", f"/v1/secrets/URL_KEY?value={CANARY}", b"")
    assert status == 400 and body["error"]["field"] == "body", body
    # bad requests: each its own answer, none repeating what was sent
    for path, payload, code, field in [
        ("/v1/secrets/bad-name", {"value": "x"}, 400, "name"),
        ("/v1/secrets/..", {"value": "x"}, 400, "name"),
        ("/v1/secrets/A%00B", {"value": "x"}, 400, "name"),
        ("/v1/secrets/K", {"value": 7}, 400, "value"),
        ("/v1/secrets/K", {"value": "x", CANARY: 1}, 400, "body"),
        ("/v1/secrets/K", {"value": "x" * 65537}, 400, "value"),
        ("/v1/secrets/K", b'{"value": "' + CANARY.encode(), 400, "body"),
        ("/v1/secrets/K", b'{"value": ' + CANARY.encode() + b'}', 400, "body"),
    ]:
        status, body = api(env, "PUT", path, payload)
        assert (status, body["error"].get("field")) == (code, field), (path, body)
        assert CANARY not in json.dumps(body), body
    assert api(env, "DELETE", "/v1/secrets/K")[0] == 404
    assert api(env, "DELETE", "/v1/secrets/API_KEY")[0] == 200
    assert api(env, "GET", "/v1/secrets")[1] == {"secrets": []}
    d = os.path.dirname(env["AEGIS_STATE_DIR"])
    assert files_with(d, CANARY.encode()) == []


def test_store_refused_by_the_daemon_too(env):
    """A key file others could read: the API answers 500 with the reason,
    stores nothing and says nothing of the value."""
    assert api(env, "PUT", "/v1/secrets/A", {"value": "first-value"})[0] == 201
    key = os.path.join(env["AEGIS_STATE_DIR"], "secrets", "master.key")
    os.chmod(key, 0o644)
    status, body = api(env, "PUT", "/v1/secrets/B", {"value": CANARY})
    assert status == 500 and "master key is open to others" in body["error"]["message"], body
    os.chmod(key, 0o600)
    assert [s["name"] for s in api(env, "GET", "/v1/secrets")[1]["secrets"]] == ["A"]


def test_instance_names_only_unknown_refused(env):
    assert aegis(env, "secret", "set", "TOKEN", input=CANARY).returncode == 0
    for secrets, why in [(["NOPE"], "no secret named NOPE"), (["TOKEN", "TOKEN:file"], "twice"),
                         (["TOKEN:dir"], "NAME:file"), (["bad-name"], "NAME:file"), ("TOKEN", "array")]:
        status, body = api(env, "POST", "/v1/instances", {"name": "x", "argv": ["true"], "secrets": secrets})
        assert status == 400 and body["error"]["field"] == "secrets" and why in body["error"]["message"], body
    assert not os.path.exists(os.path.join(env["AEGIS_STATE_DIR"], "instances", "x"))
    p = aegis(env, "instance", "start", "--name", "x", "--secret", "NOPE", "--", "true")
    assert p.returncode == 125 and "no secret named NOPE" in p.stderr, p


def test_canary_over_an_instance_lifetime(env):
    d = os.path.dirname(env["AEGIS_STATE_DIR"])
    assert aegis(env, "secret", "set", "API_KEY", input=CANARY + "\n").returncode == 0
    assert api(env, "PUT", "/v1/secrets/DB_PASS", {"value": CANARY_FILE})[0] == 201
    p = aegis(env, "instance", "start", "--name", "a", "--secret", "API_KEY", "--secret", "DB_PASS:file",
              "--", "sh", "-c", 'echo "start $API_KEY"; cat /run/secrets/DB_PASS; echo; exec sleep 600')
    assert p.returncode == 0, p
    i = wait_state(env, "a", "running")
    assert i["secrets"] == ["API_KEY", "DB_PASS:file"]
    answers = [json.dumps(i)]
    # the command has them: the env value by digest, the file 0400
    p = aegis(env, "exec", "a", "--", "sh", "-c",
              'printf %s "$API_KEY" | sha256sum; stat -c %a /run/secrets/DB_PASS; echo "[$DB_PASS]"')
    assert p.returncode == 0 and p.stdout.split("\n")[:3] == [DIGEST + "  -", "400", "[]"], p
    # what the command prints of them is redacted: exec stream, JSON exec, log
    p = aegis(env, "exec", "a", "--", "sh", "-c", 'echo "$API_KEY"; cat /run/secrets/DB_PASS >&2')
    assert p.stdout == "[secret:API_KEY]\n" and p.stderr == "[secret:DB_PASS]", p
    status, body = api(env, "POST", "/v1/instances/a/exec",
                       {"argv": ["sh", "-c", 'printf "%s" "$API_KEY"; printf "%s" "$API_KEY" | cut -c1-8']})
    assert status == 200 and body["stdout"] == "[secret:API_KEY]" + CANARY[:8] + "\n", body
    answers.append(json.dumps(body))
    deadline = time.monotonic() + 5
    while "[secret:DB_PASS]" not in (logs := aegis(env, "logs", "a").stdout):
        assert time.monotonic() < deadline, logs
        time.sleep(0.05)
    assert logs == "start [secret:API_KEY]\n[secret:DB_PASS]\n", logs
    # no process on the host carries it in its argv
    assert argv_with(CANARY.encode()) == [] and argv_with(CANARY_FILE.encode()) == []
    # pause, resume, stop, start again: decrypted afresh at the new start
    for verb in ("pause", "resume", "disable"):
        assert aegis(env, "instance", verb, "a").returncode == 0
    assert aegis(env, "instance", "start", "--name", "a").returncode == 0
    wait_state(env, "a", "running")
    p = aegis(env, "exec", "a", "--", "sh", "-c", 'printf %s "$API_KEY" | sha256sum')
    assert p.stdout.split()[0] == DIGEST, p
    for method, path in [("GET", "/v1/instances"), ("GET", "/v1/instances/a"), ("GET", "/v1/status"),
                         ("GET", "/v1/secrets"), ("GET", "/v1/instances/a/logs")]:
        s = __import__("socket").socket(__import__("socket").AF_UNIX)
        s.connect(env["AEGIS_SOCKET"])
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
        s.close()
        assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
        answers.append(raw.decode(errors="replace"))
    for text in answers + [aegis(env, "instance", "list", "--json").stdout, aegis(env, "status").stdout]:
        assert CANARY not in text and CANARY_FILE not in text, text
    # the audit chain names them, and only names them
    events = [json.loads(line) for line in open(os.path.join(env["AEGIS_STATE_DIR"], "instances", "a",
                                                             "audit.jsonl"))]
    uses = [e for e in events if e["type"] == "secret.use"]
    assert len(uses) == 2, uses
    assert aegis(env, "instance", "delete", "a").returncode == 0
    # every file the daemon, the shims and the runs wrote: state, logs,
    # audit, the daemon's own log; the store holds ciphertext only
    for needle in (CANARY, CANARY_FILE):
        assert files_with(d, needle.encode()) == [], needle


def test_deleted_secret_fails_the_next_start_with_a_reason(env):
    assert aegis(env, "secret", "set", "GONE", input=CANARY).returncode == 0
    assert aegis(env, "instance", "start", "--name", "g", "--secret", "GONE", "--", "sleep", "600").returncode == 0
    wait_state(env, "g", "running")
    assert aegis(env, "instance", "disable", "g").returncode == 0
    assert aegis(env, "secret", "delete", "GONE").returncode == 0
    assert aegis(env, "instance", "start", "--name", "g").returncode == 0
    i = wait_state(env, "g", "failed")
    assert "no secret named GONE" in json.dumps(i), i


def test_b_cannot_read_a_secrets(env):
    """I-01/S-03: sandbox B, running beside A, finds A's secret by no path:
    /proc (A's environment), /run/secrets, the state dir, the store. The same
    probes from the host do find it, so they would catch a leak."""
    assert aegis(env, "secret", "set", "A_KEY", input=CANARY).returncode == 0
    assert aegis(env, "instance", "start", "--name", "a", "--secret", "A_KEY", "--secret", "A_KEY2:file",
                 "--", "sleep", "601").returncode != 0  # A_KEY2 does not exist: refused, nothing made
    assert aegis(env, "secret", "set", "A_KEY2", input=CANARY_FILE).returncode == 0
    assert aegis(env, "instance", "start", "--name", "a", "--secret", "A_KEY", "--secret", "A_KEY2:file",
                 "--", "sleep", "601").returncode == 0
    assert aegis(env, "instance", "start", "--name", "b", "--", "sleep", "600").returncode == 0
    wait_state(env, "a", "running")
    wait_state(env, "b", "running")
    state = env["AEGIS_STATE_DIR"]
    probe = ("cat /proc/[0-9]*/environ /run/secrets/* 2>/dev/null | grep -c {c}; "
             "cat /proc/[0-9]*/cmdline | tr '\\0' ' ' | grep -c 'sleep 60[1]'; "
             "cat {s}/secrets/master.key {s}/secrets/secrets.json 2>/dev/null | wc -c; "
             "ls {s}/instances/a 2>/dev/null | wc -l").format(c=CANARY.split("-")[1], s=state)
    p = aegis(env, "exec", "b", "--", "sh", "-c", probe)
    assert p.stdout.split() == ["0", "0", "0", "0"], p  # no value, no A process, no store, no A dir
    # outside, the same probes find A's command, its environment and the store
    # (a vm instance's command is in its guest: from A's own exec below)
    if TEST_BACKEND == "ns":
        found = 0
        for pid in subprocess.run(["pgrep", "-f", "^sleep 601$"], capture_output=True, text=True).stdout.split():
            found += CANARY.encode() in open(f"/proc/{pid}/environ", "rb").read()
        assert found == 1
    else:
        p = aegis(env, "exec", "a", "--", "sh", "-c", probe)
        seen = p.stdout.split()
        assert int(seen[0]) >= 1 and seen[1] == "1", p  # its environment, its own sleep
    assert os.path.getsize(os.path.join(state, "secrets", "master.key")) == 32
    assert len(os.listdir(os.path.join(state, "instances", "a"))) > 0
    # and A itself has both, B has neither
    p = aegis(env, "exec", "a", "--", "sh", "-c", 'printf %s "$A_KEY" | sha256sum; ls /run/secrets')
    assert p.stdout.split() == [DIGEST, "-", "A_KEY2"], p
    p = aegis(env, "exec", "b", "--", "sh", "-c", 'echo "[${A_KEY:-}]"; ls /run/secrets 2>&1 >/dev/null | wc -l')
    assert p.stdout == "[]\n1\n", p


@pytest.mark.parametrize("case", ["0644", "0640", "other-owner", "symlink", "open-parent"])
def test_daemon_refuses_an_unsafe_key(daemon_env, case):
    """S-10: aegisd does not start over a key file (or its directory) that
    others could read or swap; the message says which; once fixed it starts
    and the secrets are all there."""
    env = daemon_env
    assert aegis(env, "secret", "set", "KEEP", input="kept-value").returncode == 0
    d = os.path.join(env["AEGIS_STATE_DIR"], "secrets")
    key = os.path.join(d, "master.key")
    undo = {
        "0644": lambda: (os.chmod(key, 0o644), lambda: os.chmod(key, 0o600)),
        "0640": lambda: (os.chmod(key, 0o640), lambda: os.chmod(key, 0o600)),
        "other-owner": lambda: (os.chown(key, 65534, 65534), lambda: os.chown(key, 0, 0)),
        "symlink": lambda: (os.rename(key, key + ".real"), os.symlink(key + ".real", key),
                            lambda: (os.unlink(key), os.rename(key + ".real", key))),
        "open-parent": lambda: (os.chmod(d, 0o777), lambda: os.chmod(d, 0o700)),
    }[case]()[-1]
    p = aegis(env, "up")
    assert p.returncode == 125 and "aegisd exited" in p.stderr and "secrets" in p.stderr, p
    assert p.stderr.count("\n") == 1, p
    undo()
    assert aegis(env, "up").returncode == 0
    status, body = api(env, "GET", "/v1/secrets")
    assert status == 200 and [s["name"] for s in body["secrets"]] == ["KEEP"], body


def core_files(d):
    return [f for f in os.listdir(d) if f == "core" or f.startswith("core.")]


def test_crash_with_a_secret_leaves_no_core(env, tmp_path):
    """S-05: the shim holds an instance's decrypted secrets for its life. It
    runs with RLIMIT_CORE 0, so a crash leaves no core file; the instance is
    reported failed and starts again. Outside, the same crash of a process
    without that limit does leave a core (where core_pattern names a file)."""
    assert aegis(env, "secret", "set", "CORE_KEY", input=CANARY).returncode == 0
    assert aegis(env, "instance", "start", "--name", "c", "--secret", "CORE_KEY", "--",
                 "sleep", "600").returncode == 0
    shim = wait_state(env, "c", "running")["shim_pid"]
    limits = open(f"/proc/{shim}/limits").read()
    assert [l.split()[4:6] for l in limits.splitlines() if l.startswith("Max core file size")] == [["0", "0"]]
    cwd = os.readlink(f"/proc/{shim}/cwd")
    before = core_files(cwd)
    os.kill(shim, 11)
    wait_state(env, "c", "failed")
    file_pattern = not open("/proc/sys/kernel/core_pattern").read().startswith("|")
    assert core_files(cwd) == before
    assert aegis(env, "instance", "start", "--name", "c").returncode == 0
    wait_state(env, "c", "running")
    p = aegis(env, "exec", "c", "--", "sh", "-c", 'printf %s "$CORE_KEY" | sha256sum')
    assert p.stdout.split()[0] == DIGEST, p
    if file_pattern:
        # the probe works: without the limit the same signal leaves a core here
        sleeper = subprocess.Popen(["sh", "-c", "ulimit -c unlimited; exec sleep 30"], cwd=tmp_path)
        time.sleep(0.2)
        os.kill(sleeper.pid, 11)
        sleeper.wait()
        assert core_files(tmp_path) != [], os.listdir(tmp_path)
