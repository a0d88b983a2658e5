"""The secrets store and explicit injection (issue 7, first part): values in
from stdin only, out only into the runs that name them; a canary value is
found in no log, audit line, artifact, state file or process argv."""
import hashlib
import json
import os
import subprocess
import time

import pytest

from conftest import AEGIS, run

CANARY = "canary-7f3a9c-not-for-logs"


@pytest.fixture
def env(tmp_path):
    state = tmp_path / "state"
    return dict(os.environ, AEGIS_STATE_DIR=str(state), AEGIS_SOCKET=str(tmp_path / "run" / "aegisd.sock"))


def aegis(env, *args, **kw):
    return run([AEGIS, *args], env=env, **kw)


def test_set_list_inject_delete(env, tmp_path):
    p = aegis(env, "secret", "set", "API_KEY", input=CANARY + "\n")
    assert p.returncode == 0 and CANARY not in p.stdout + p.stderr, p
    p = aegis(env, "secret", "list", "--json")
    assert [s["name"] for s in json.loads(p.stdout)] == ["API_KEY"] and CANARY not in p.stdout
    # injected into the run that names it, and only that one
    audit, arts = tmp_path / "audit.jsonl", tmp_path / "arts"
    # (compared by digest: the canary itself must not be in the command either)
    p = aegis(env, "run", "--secret", "API_KEY", "--audit", str(audit), "--artifacts", str(arts), "--",
              "sh", "-c", 'printf %s "$API_KEY" | sha256sum')
    assert p.returncode == 0 and p.stdout.split()[0] == hashlib.sha256(CANARY.encode()).hexdigest(), p
    p = aegis(env, "run", "--", "sh", "-c", 'echo "[${API_KEY:-unset}]"')
    assert p.stdout == "[unset]\n", p
    events = [json.loads(line) for line in open(audit)]
    assert [e["names"] for e in events if e["type"] == "secret.use"] == [["API_KEY"]], events
    assert json.load(open(arts / "result.json"))["secrets"] == ["API_KEY"]
    # nowhere on disk but encrypted: the audit log, the artifacts, the store
    for root, _, files in os.walk(tmp_path):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                assert CANARY.encode() not in fh.read(), os.path.join(root, f)
    assert aegis(env, "secret", "delete", "API_KEY").returncode == 0
    p = aegis(env, "run", "--secret", "API_KEY", "--", "true")
    assert p.returncode == 125 and "no secret named API_KEY" in p.stderr, p


def test_never_in_any_argv(env):
    """HOSTILE.md S-02: while a run that holds it is alive, no process on the
    host has the value in its command line."""
    assert aegis(env, "secret", "set", "TOKEN", input=CANARY).returncode == 0
    proc = subprocess.Popen([AEGIS, "run", "--secret", "TOKEN", "--", "sleep", "2"], env=env)
    time.sleep(0.5)
    hits = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if CANARY.encode() in open(f"/proc/{pid}/cmdline", "rb").read():
                    hits.append(pid)
            except OSError:
                pass
    assert proc.wait(10) == 0
    assert hits == []


def test_bad_input_and_unsafe_key_files(env):
    state = env["AEGIS_STATE_DIR"]
    for bad in ("bad-name", "1ABC", "../x", "A" * 129, ""):
        p = aegis(env, "secret", "set", bad, input="x")
        assert p.returncode == 125 and p.stderr.count("\n") == 1, (bad, p)
    assert aegis(env, "secret", "set", "OK", input="v").returncode == 0
    key = os.path.join(state, "secrets", "master.key")
    os.chmod(key, 0o644)
    p = aegis(env, "secret", "list")
    assert p.returncode == 125 and "open to others" in p.stderr, p
    os.chmod(key, 0o600)
    p = aegis(env, "run", "--secret", "OK", "--", "sh", "-c", 'echo "$OK"')
    assert p.stdout == "v\n", p
    # a damaged store is reported, not overwritten
    store = os.path.join(state, "secrets", "secrets.json")
    with open(store, "r+") as f:
        f.truncate(20)
    p = aegis(env, "secret", "set", "OTHER", input="w")
    assert p.returncode == 125 and "damaged" in p.stderr and os.path.getsize(store) == 20, p


def test_output_is_redacted_even_split_across_writes(env, tmp_path):
    assert aegis(env, "secret", "set", "TOK", input=CANARY).returncode == 0
    arts = tmp_path / "arts"
    script = ('echo "a $TOK b"; printf %s "$TOK" | head -c 9; sleep 0.2; printf %s "$TOK" | tail -c +10; '
              'echo; echo "err $TOK" >&2')
    p = aegis(env, "run", "--secret", "TOK", "--artifacts", str(arts), "--", "sh", "-c", script)
    assert p.returncode == 0, p
    assert p.stdout == "a [secret:TOK] b\n[secret:TOK]\n" and p.stderr == "err [secret:TOK]\n", p
    for f in ("stdout", "stderr"):
        assert CANARY not in (arts / f).read_text() and "[secret:TOK]" in (arts / f).read_text()
    p = aegis(env, "run", "--json", "--secret", "TOK", "--", "sh", "-c", 'printf "x%sy" "$TOK"')
    assert json.loads(p.stdout)["stdout"] == "x[secret:TOK]y", p
    # a run without the secret prints what it likes: nothing is redacted there
    p = aegis(env, "run", "--", "echo", "plain text")
    assert p.stdout == "plain text\n"
