"""The secrets store and explicit injection (issue 7, first part): values in
from stdin only, out only into the runs that name them; a canary value is
found in no log, audit line, artifact, state file or process argv."""
import hashlib
import json
import os
import shlex
import subprocess
import time

import pytest

from conftest import AEGIS, file_data, run

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
            if os.path.islink(os.path.join(root, f)):
                continue  # e.g. the vm backend's /etc copy: links into the host's /usr
            assert CANARY.encode() not in file_data(os.path.join(root, f)), os.path.join(root, f)
    assert aegis(env, "secret", "delete", "API_KEY").returncode == 0
    p = aegis(env, "run", "--secret", "API_KEY", "--", "true")
    assert p.returncode == 125 and "no secret named API_KEY" in p.stderr, p


def host_secret_mounts():
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if "/run/secrets" in line]


@pytest.mark.parametrize("request_", ["TOKEN", "TOKEN:file"])
def test_never_in_any_argv(env, request_):
    """HOSTILE.md S-02: while a run that holds it is alive, no process on the
    host has the value in its command line; G3: a file secret's tmpfs is not
    seen on the host."""
    assert aegis(env, "secret", "set", "TOKEN", input=CANARY).returncode == 0
    mounts = host_secret_mounts()
    proc = subprocess.Popen([AEGIS, "run", "--secret", request_, "--", "sleep", "2"], env=env)
    time.sleep(0.5)
    assert host_secret_mounts() == mounts
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


# --- secrets as files: --secret NAME:file (HOSTILE.md S-06) ---------------

SHA = hashlib.sha256(CANARY.encode()).hexdigest()


def secrets_mount(mountinfo):
    """The /run/secrets line of a mountinfo text → (mount options, fs type,
    superblock options), or None."""
    for line in mountinfo.splitlines():
        fields = line.split()
        if fields[4] == "/run/secrets":
            after = fields[fields.index("-") + 1:]
            return set(fields[5].split(",")), after[0], set(after[2].split(","))
    return None


def test_file_secret_is_a_0400_file_on_its_own_tmpfs_and_not_in_the_env(env, tmp_path):
    """S-06, S-01: the file holds the value exactly, mode 0400, owned by the
    command's user, on a read-only nosuid/nodev/noexec tmpfs; the variable is
    not set; the audit log and result.json name it and say how it was
    given; the canary is in no file the run or the store left."""
    assert aegis(env, "secret", "set", "TOKEN", input=CANARY).returncode == 0
    audit, arts = tmp_path / "audit.jsonl", tmp_path / "arts"
    # (compared by digest: the canary itself must not be in the command either)
    script = ('stat -c "%a %u %g %F" /run/secrets/TOKEN; echo "$(id -u) $(id -g)"; sha256sum < /run/secrets/TOKEN; '
              'echo "env:${TOKEN-unset}"; ls -A /run/secrets; echo ---; cat /proc/self/mountinfo')
    p = aegis(env, "run", "--secret", "TOKEN:file", "--audit", str(audit), "--artifacts", str(arts), "--",
              "sh", "-c", script)
    assert p.returncode == 0, p
    head, mountinfo = p.stdout.split("---\n")
    mode, ids = head.splitlines()[:2]
    assert mode == f"400 {ids} regular file", p.stdout
    assert head.splitlines()[2:] == [SHA + "  -", "env:unset", "TOKEN"], p.stdout
    opts, fstype, super_opts = secrets_mount(mountinfo)
    assert fstype == "tmpfs" and {"ro", "nosuid", "nodev", "noexec"} <= opts and "ro" in super_opts, mountinfo
    events = [json.loads(line) for line in open(audit)]
    uses = [(e["names"], e["as"]) for e in events if e["type"] == "secret.use"]
    assert uses == [(["TOKEN"], {"TOKEN": "file"})], events
    result = json.load(open(arts / "result.json"))
    assert result["secrets"] == ["TOKEN"] and result["secrets_as"] == {"TOKEN": "file"}, result
    for root, _, files in os.walk(tmp_path):
        for f in files:
            if os.path.islink(os.path.join(root, f)):
                continue  # e.g. the vm backend's /etc copy: links into the host's /usr
            assert CANARY.encode() not in file_data(os.path.join(root, f)), os.path.join(root, f)


# Each step works on a directory the sandbox owns (the baseline) and must
# fail on /run/secrets: chmod first, so a writable mount cannot hide behind
# the 0400/0500 modes.
PROBE_SCRIPT = r'''
d=$1 f=$2
try() { if "$@" 2>/dev/null; then echo "ok $1"; else echo "fail $1"; fi; }
append() { printf x >> "$1"; }
over() { printf x > "$1"; }
try chmod 700 "$d"
try chmod 600 "$d/$f"
try append "$d/$f"
try over "$d/$f"
try touch "$d/NEW"
try mkdir "$d/DIR"
try ln -s /etc/passwd "$d/LINK"
try mv "$d/$f" "$d/MOVED"
try rm -f "$d/MOVED" "$d/$f"
'''
PROBE_STEPS = ["chmod", "chmod", "append", "over", "touch", "mkdir", "ln", "mv", "rm"]


def test_file_secret_cannot_be_changed_replaced_or_added_to(env):
    """S-06: writing, creating, chmod, rename, unlink all fail under
    /run/secrets; the same steps succeed in a directory of the sandbox's
    own /tmp laid out the same way (the probe works)."""
    assert aegis(env, "secret", "set", "TOKEN", input=CANARY).returncode == 0
    script = ('mkdir /tmp/b && printf v > /tmp/b/F && chmod 400 /tmp/b/F && chmod 500 /tmp/b && '
              f'sh -c {shlex.quote(PROBE_SCRIPT)} - /tmp/b F && echo --- && '
              f'sh -c {shlex.quote(PROBE_SCRIPT)} - /run/secrets TOKEN; echo ---; '
              'ls -A /run/secrets; sha256sum < /run/secrets/TOKEN; stat -c %a /run/secrets/TOKEN')
    p = aegis(env, "run", "--secret", "TOKEN:file", "--", "sh", "-c", script)
    assert p.returncode == 0, p
    baseline, inside, after = p.stdout.split("---\n")
    assert baseline.split() == [w for s in PROBE_STEPS for w in ("ok", s)], p.stdout
    assert inside.split() == [w for s in PROBE_STEPS for w in ("fail", s)], p.stdout
    assert after.split() == ["TOKEN", SHA, "-", "400"], p.stdout
    assert CANARY not in p.stdout + p.stderr


def test_no_run_secrets_without_file_secrets(env):
    assert aegis(env, "secret", "set", "TOKEN", input=CANARY).returncode == 0
    look = 'if [ -e /run/secrets ]; then echo there; else echo absent; fi; [ -e /run ] && echo run'
    assert aegis(env, "run", "--", "sh", "-c", look).stdout == "absent\n"
    assert aegis(env, "run", "--secret", "TOKEN", "--", "sh", "-c", look).stdout == "absent\n"
    # the probe sees it when it is there
    assert aegis(env, "run", "--secret", "TOKEN:file", "--", "sh", "-c", look).stdout == "there\nrun\n"


def test_env_form_is_the_plain_form_and_forms_mix(env, tmp_path):
    assert aegis(env, "secret", "set", "TOKEN", input=CANARY).returncode == 0
    assert aegis(env, "secret", "set", "OTHER", input="other-value-1234").returncode == 0
    audit = tmp_path / "audit.jsonl"
    p = aegis(env, "run", "--secret", "TOKEN:env", "--secret", "OTHER:file", "--audit", str(audit), "--",
              "sh", "-c", 'printf %s "$TOKEN" | sha256sum; ls /run/secrets; echo "${OTHER-unset}"')
    assert p.stdout == f"{SHA}  -\nOTHER\nunset\n", p
    uses = [(e["names"], e["as"]) for e in map(json.loads, open(audit)) if e["type"] == "secret.use"]
    assert uses == [(["TOKEN", "OTHER"], {"TOKEN": "env", "OTHER": "file"})], uses


@pytest.mark.parametrize("args,says", [
    (("TOKEN:dir",), "'TOKEN:dir'"),
    ((":file",), "':file'"),
    (("TOKEN:",), "'TOKEN:'"),
    (("TOKEN:file:file",), "'TOKEN:file:file'"),
    (("1TOKEN:file",), "'1TOKEN:file'"),
    (("TOKEN", "TOKEN:file"), "TOKEN is asked for twice"),
    (("TOKEN:file", "TOKEN:file"), "TOKEN is asked for twice"),
    (("TOKEN:file", "MISSING:file"), "no secret named MISSING"),
])
def test_bad_requests_fail_before_the_run_with_one_line(env, tmp_path, args, says):
    assert aegis(env, "secret", "set", "TOKEN", input=CANARY).returncode == 0
    ws = tmp_path / "ws"
    ws.mkdir()
    flags = [a for arg in args for a in ("--secret", arg)]
    p = aegis(env, "run", "--workspace", str(ws), *flags, "--", "touch", "/workspace/ran")
    assert p.returncode == 125 and p.stderr.count("\n") == 1 and says in p.stderr, p
    assert CANARY not in p.stdout + p.stderr and not (ws / "ran").exists(), p


def test_file_secret_is_redacted_from_output(env, tmp_path):
    assert aegis(env, "secret", "set", "TOKEN", input=CANARY).returncode == 0
    arts = tmp_path / "arts"
    p = aegis(env, "run", "--secret", "TOKEN:file", "--artifacts", str(arts), "--",
              "sh", "-c", "cat /run/secrets/TOKEN; echo; cat /run/secrets/TOKEN >&2")
    assert p.stdout == "[secret:TOKEN]\n" and p.stderr == "[secret:TOKEN]", p
    assert CANARY not in (arts / "stdout").read_text() + (arts / "stderr").read_text()
    p = aegis(env, "run", "--json", "--secret", "TOKEN:file", "--", "cat", "/run/secrets/TOKEN")
    assert json.loads(p.stdout)["stdout"] == "[secret:TOKEN]", p


def test_file_secret_is_readable_under_a_files_read_policy(env, tmp_path):
    """A policy restricting reads (landlock) still lets the command read the
    secrets it was given, and nothing else outside its list."""
    assert aegis(env, "secret", "set", "TOKEN", input=CANARY).returncode == 0
    pol = tmp_path / "p.json"
    pol.write_text(json.dumps({"files": {"read": ["/workspace"]}}))
    p = aegis(env, "run", "--policy", str(pol), "--secret", "TOKEN:file", "--", "sh", "-c",
              "sha256sum < /run/secrets/TOKEN; echo hi > /tmp/x; cat /tmp/x; echo rc=$?")
    assert p.stdout.startswith(SHA + "  -\n") and "rc=1" in p.stdout, p


def test_replay_asks_the_store_again(env, tmp_path):
    """A replayed run gets the secrets the run was given, the same way, with
    the store's value of today; result.json never held one."""
    assert aegis(env, "secret", "set", "RKEY", input="first-value-1").returncode == 0
    assert aegis(env, "secret", "set", "RFILE", input="file-value-1").returncode == 0
    arts = tmp_path / "arts"
    show = 'printf "%s|" "${RKEY:-}" "${RFILE:-}"; cat /run/secrets/RFILE | md5sum; printf %s "$RKEY" | md5sum'
    p = aegis(env, "run", "--secret", "RKEY", "--secret", "RFILE:file", "--artifacts", str(arts), "--",
              "sh", "-c", show)
    first = p.stdout
    assert p.returncode == 0 and first.startswith("[secret:RKEY]||"), p
    assert aegis(env, "secret", "set", "RKEY", input="second-value-2").returncode == 0
    p = aegis(env, "replay", str(arts))
    assert p.returncode == 0 and p.stdout.startswith("[secret:RKEY]||"), p
    lines = p.stdout.split("\n")
    assert lines[0] == first.split("\n")[0] and lines[1] != first.split("\n")[1], (first, p.stdout)
    assert aegis(env, "secret", "delete", "RFILE").returncode == 0
    p = aegis(env, "replay", str(arts))
    assert p.returncode == 125 and "no secret named RFILE" in p.stderr, p
