"""Policy rules at run time: commands, argv rules, files; each rule holds
inside, the same action works outside or without the rule, and denials are
in the audit log with the rule that matched (HOSTILE.md E-39, E-40)."""
import json
import os
import subprocess

import pytest

from conftest import AEGIS, PROBE, run, sandboxed


def policy(tmp_path, body, name="p.json"):
    path = tmp_path / name
    path.write_text(json.dumps(body))
    return str(path)


def events(path, kind):
    with open(path) as f:
        return [e for e in map(json.loads, f) if e["type"] == kind]


def test_denied_command_cannot_run_but_runs_without_the_rule(tmp_path):
    pol = policy(tmp_path, {"commands": {"deny": ["/usr/bin/whoami"]}})
    assert sandboxed("whoami").stdout == "root\n"
    p = sandboxed("whoami", opts=("--policy", pol))
    assert p.returncode == 126, p
    # every name of it, and reading it to make a copy, fail too
    p = sandboxed("sh", "-c", "cat /usr/bin/whoami > /tmp/w; echo rc=$?; /bin/whoami",
                  opts=("--policy", pol))
    assert "rc=1" in p.stdout and p.returncode != 0 and "root" not in p.stdout, p


def test_command_allowlist_is_enforced_by_the_kernel(tmp_path):
    """E-39: with /usr/bin/* allowed, a binary copied to /tmp cannot run, in
    any process of the sandbox, however it is started."""
    pol = policy(tmp_path, {"commands": {"allow": ["/usr/bin/*"]}})
    script = "cp /usr/bin/id /tmp/id && /tmp/id -u; echo rc=$?; sh -c '/tmp/id -u'; echo rc2=$?; id -u"
    p = sandboxed("sh", "-c", script, opts=("--policy", pol))
    assert "rc=126" in p.stdout and "rc2=126" in p.stdout, p
    assert p.stdout.strip().endswith("0"), p  # /usr/bin/id itself runs
    p = sandboxed("sh", "-c", script)
    assert "rc=0" in p.stdout, p


def test_argv_rule_refuses_with_eperm_and_is_audited(tmp_path):
    pol = policy(tmp_path, {"commands": {"argv_deny": ["ls -la"]}})
    log = str(tmp_path / "audit.jsonl")
    p = sandboxed("sh", "-c", "ls -la / >/dev/null; echo rc=$?; ls -l / >/dev/null; echo rc2=$?",
                  opts=("--policy", pol, "--audit", log))
    assert "rc=126" in p.stdout and "rc2=0" in p.stdout, p
    assert "Operation not permitted" in p.stderr
    denied = [e for e in events(log, "exec") if e["verdict"] == "deny"]
    # the shell retries the refused exec along its PATH: every try is refused
    assert denied and all(e["argv"] == ["ls", "-la", "/"] for e in denied), denied
    assert all(e["rule"] == "commands.argv_deny: ls -la" for e in denied)
    assert any(e["argv"] == ["ls", "-l", "/"] and e["verdict"] == "allow" for e in events(log, "exec"))


def test_exec_audit_sees_scripts_pipelines_and_fexecve(tmp_path):
    log = str(tmp_path / "audit.jsonl")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "s.sh").write_text("#!/bin/sh\nuname -s\n")
    os.chmod(ws / "s.sh", 0o755)
    fexec = ("import os; fd = os.open('/usr/bin/true', os.O_RDONLY); "
             "os.execve(fd, ['true', 'via-fexecve'], {})")
    p = sandboxed("sh", "-c", f"./s.sh | cat; python3 -c \"{fexec}\"",
                  opts=("--workspace", str(ws), "--audit", log))
    assert p.returncode == 0, p
    argvs = [e["argv"] for e in events(log, "exec")]
    assert ["./s.sh"] in argvs and ["uname", "-s"] in argvs and ["cat"] in argvs, argvs
    assert ["true", "via-fexecve"] in argvs, argvs
    assert all(e["verdict"] == "allow" for e in events(log, "exec"))


def test_files_write_list(tmp_path):
    pol = policy(tmp_path, {"files": {"write": ["/tmp"]}})
    p = sandboxed("sh", "-c", "echo a > /tmp/ok && echo ok; echo b > /workspace/no; echo rc=$?",
                  opts=("--policy", pol))
    assert "ok" in p.stdout and "rc=2" in p.stdout and "Permission denied" in p.stderr, p
    p = sandboxed("sh", "-c", "echo b > /workspace/no; echo rc=$?")
    assert "rc=0" in p.stdout


def test_files_read_list(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "secret").write_text("s3cret")
    pol = policy(tmp_path, {"files": {"read": ["/tmp"]}})
    p = sandboxed("sh", "-c", "cat /workspace/secret; echo rc=$?; cat /etc/hostname",
                  opts=("--policy", pol, "--workspace-ro", str(ws)))
    assert "s3cret" not in p.stdout and "rc=1" in p.stdout and "aegis" in p.stdout, p
    p = sandboxed("cat", "/workspace/secret", opts=("--workspace-ro", str(ws)))
    assert p.stdout == "s3cret"


def _git_workspace(ws):
    (ws / ".git").mkdir(parents=True)
    (ws / ".git" / "config").write_text("[core]\n")
    (ws / "decoy").mkdir()
    (ws / "decoy" / "config").write_text("decoy\n")
    return ws


def test_hidden_file_and_symlink_swap(tmp_path):
    """E-40: .git/config hidden; renaming .git or swapping it for a symlink to
    a decoy fails, and the decoy is unchanged."""
    ws = _git_workspace(tmp_path / "ws")
    pol = policy(tmp_path, {"files": {"deny": ["/workspace/.git/config"]}})
    attack = ("cat .git/config; echo rc=$?; echo x >> .git/config; echo rc=$?; "
              "mv .git g2; echo mv=$?; rm -rf .git; ln -sfn decoy .git; echo pwned >> .git/config")
    p = sandboxed("sh", "-c", attack, opts=("--policy", pol, "--workspace", str(ws)))
    assert "[core]" not in p.stdout and "rc=0" not in p.stdout and "mv=0" not in p.stdout, p
    assert (ws / "decoy" / "config").read_text() == "decoy\n"
    assert (ws / ".git" / "config").read_text() == "[core]\n"
    # without the rule the same script reads the file and redirects the write
    ws2 = _git_workspace(tmp_path / "ws2")
    p = sandboxed("sh", "-c", attack, opts=("--workspace", str(ws2)))
    assert "[core]" in p.stdout and "mv=0" in p.stdout, p
    assert (ws2 / "decoy" / "config").read_text() != "decoy\n"


def test_argv_race_cannot_run_a_denied_binary(tmp_path):
    """A thread flipping the exec path between an allowed and a denied binary
    never gets the denied one run: it is refused by the kernel, not only by
    the exec watcher."""
    pol = policy(tmp_path, {"commands": {"deny": ["/usr/bin/whoami"]}})
    outside = run([PROBE, "exec-race", "/usr/bin/true", "/usr/bin/whoami", "300"])
    assert "denied_ran=0" not in outside.stdout, outside.stdout  # the race works outside
    p = sandboxed("/workspace/aegis-probe", "exec-race", "/usr/bin/true", "/usr/bin/whoami", "300",
                  opts=("--policy", pol, "--workspace-ro", os.path.dirname(PROBE), "--pids", "64"))
    assert "denied_ran=0" in p.stdout, p


def test_strict_profile_runs_and_denies(tmp_path):
    p = sandboxed("sh", "-c", "echo hi > /workspace/f && cat /workspace/f; curl --version; echo rc=$?",
                  opts=("--policy", "strict"))
    assert "hi" in p.stdout and "rc=0" not in p.stdout and "curl: Permission denied" in p.stderr, p
    assert "curl" in sandboxed("curl", "--version").stdout


def test_policy_limits_apply_and_flags_override(tmp_path):
    pol = policy(tmp_path, {"limits": {"output": "10", "wall": "30s"}})
    p = sandboxed("echo", "0123456789abcdef", opts=("--policy", pol))
    assert p.stdout == "0123456789" and "output_truncated" in p.stderr
    p = sandboxed("echo", "0123456789abcdef", opts=("--policy", pol, "--output", "1m"))
    assert p.stdout == "0123456789abcdef\n"


def test_run_start_records_policy_digest(tmp_path):
    pol = policy(tmp_path, {"commands": {"deny": ["/usr/bin/wget"]}})
    log = str(tmp_path / "audit.jsonl")
    sandboxed("true", opts=("--policy", pol, "--audit", log))
    start = events(log, "run.start")[0]
    assert start["policy"]["name"] == pol and start["policy"]["digest"].startswith("sha256:")
    show = run([AEGIS, "policy", "show", pol])
    assert show.returncode == 0


def test_bad_policy_is_one_line_125(tmp_path):
    pol = policy(tmp_path, {"comands": {}})
    p = sandboxed("true", opts=("--policy", pol))
    assert p.returncode == 125 and len(p.stderr.strip().splitlines()) == 1 and "comands" in p.stderr
    p = sandboxed("true", opts=("--policy", str(tmp_path / "missing.json")))
    assert p.returncode == 125 and "missing.json" in p.stderr
