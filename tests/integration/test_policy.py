"""`aegis policy check` and `aegis policy show`, through the real binary.

A valid file prints "FILE: ok" and its compiled effect; every malformed kind
(wrong type, unknown field, bad number, duplicate key, huge or deeply nested
file, a malformed network rule) exits 125 with exactly one line on stderr
that names the field. The network flags of `aegis run` are checked by the
same code and extend the policy.
"""
import json

import pytest

from conftest import aegis, sandboxed

FULL = {
    "commands": {"allow": ["/usr/bin/*", "/opt//tool/./bin/x"], "deny": ["/usr/bin/curl"],
                 "argv_deny": ["git  push"]},
    "files": {"read": ["/data/"], "write": ["/workspace", "/tmp"], "deny": ["/workspace/.env"]},
    "network": {"mode": "none"},
    "limits": {"wall": "60s", "cpu": 30, "cpus": 1.5, "memory": "512m", "pids": 256,
               "disk": "1g", "output": 8388608, "nofile": 1024, "execs": 500},
    "enforcement": "best-effort",
}


def write(tmp_path, text, name="p.json"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def check_refused(tmp_path, text, *want):
    """Exit 125, nothing on stdout, one stderr line holding every `want`."""
    path = write(tmp_path, text)
    r = aegis("policy", "check", path)
    assert r.returncode == 125, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and r.stderr.endswith("\n"), r.stderr
    assert lines[0].startswith(f"aegis: policy {path}: "), lines[0]
    for w in want:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def test_check_valid_prints_ok_and_effect(tmp_path):
    path = write(tmp_path, json.dumps(FULL))
    r = aegis("policy", "check", path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    first, rest = r.stdout.split("\n", 1)
    assert first == f"{path}: ok"
    effect = json.loads(rest)
    assert list(effect) == ["commands", "files", "network", "limits", "enforcement"]
    assert effect["commands"]["allow"] == ["/usr/bin/*", "/opt/tool/bin/x"]
    assert effect["commands"]["argv_deny"] == ["git push"]
    assert effect["files"]["read"] == ["/data"]
    assert effect["limits"] == {"wall_ms": 60000, "cpu_ms": 30000, "cpus": 1.5,
                                "memory": 512 << 20, "pids": 256, "disk": 1 << 30,
                                "output": 8 << 20, "nofile": 1024, "execs": 500}
    assert effect["enforcement"] == "best-effort"
    assert rest.startswith("{\n  \"commands\"")  # indented by 2


def test_effect_is_a_fixed_point(tmp_path):
    """The printed effect is itself a valid policy with the same effect."""
    first = aegis("policy", "show", write(tmp_path, json.dumps(FULL)))
    assert first.returncode == 0, first.stderr
    again = aegis("policy", "show", write(tmp_path, first.stdout, "effect.json"))
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


def test_empty_object_is_the_default(tmp_path):
    r = aegis("policy", "show", write(tmp_path, "{}"))
    d = aegis("policy", "show", "default")
    assert r.returncode == 0 and d.returncode == 0
    assert r.stdout == d.stdout


@pytest.mark.parametrize("name", ["default", "strict"])
def test_show_builtin(name):
    r = aegis("policy", "show", name)
    assert r.returncode == 0, r.stderr
    effect = json.loads(r.stdout)
    assert effect["network"] == {"mode": "none", "allow": [], "deny": [], "hosts": {}}
    assert effect["enforcement"] == "strict"
    if name == "default":
        assert effect["limits"] == {}
        assert effect["commands"]["allow"] is None
    else:
        assert "/usr/bin/curl" in effect["commands"]["deny"]
        assert effect["commands"]["argv_deny"] == ["git push"]
        assert effect["files"]["write"] == ["/workspace", "/tmp"]
        assert effect["limits"] == {"wall_ms": 300000, "memory": 512 << 20, "pids": 128,
                                    "output": 8 << 20, "nofile": 256, "execs": 1000}


def test_same_file_twice_same_output(tmp_path):
    path = write(tmp_path, json.dumps(FULL))
    a, b = aegis("policy", "check", path), aegis("policy", "check", path)
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout
    a, b = aegis("policy", "show", path), aegis("policy", "show", path)
    assert a.stdout == b.stdout and a.returncode == 0


@pytest.mark.parametrize("text,want", [
    # wrong types
    ('{"commands": {"allow": ["/a", "/b", 3]}}', ["commands.allow[2]: expected a string, got integer"]),
    ('{"commands": {"deny": "/usr/bin/curl"}}', ["commands.deny: expected a list of strings, got string"]),
    ('{"commands": []}', ["commands: expected an object, got array"]),
    ('{"limits": {"pids": "256"}}', ["limits.pids: expected an integer, got string"]),
    ('{"enforcement": true}', ["enforcement: expected a string, got boolean"]),
    ('{"network": {"mode": 1}}', ["network.mode: expected a string, got integer"]),
    ('[]', ["expected an object at the top level, got array"]),
    # unknown fields, top level and nested
    ('{"comands": {}}', ['unknown field "comands" (known: commands, files, network, limits, enforcement)']),
    ('{"commands": {"alow": []}}', ['commands: unknown field "alow" (known: allow, deny, argv_deny)']),
    ('{"files": {"exec": []}}', ['files: unknown field "exec" (known: read, write, deny)']),
    ('{"limits": {"memroy": "1g"}}', ['limits: unknown field "memroy"']),
    ('{"network": {"proxy": "x"}}', ['network: unknown field "proxy" (known: mode, allow, deny, hosts)']),
    # values
    ('{"limits": {"memory": "lots"}}', ['limits.memory: not a size: "lots" (e.g. 512m, 1g)']),
    ('{"limits": {"memory": "1m"}}', ["limits.memory: must be at least 4m"]),
    ('{"limits": {"wall": "soon"}}', ['limits.wall: not a duration: "soon"']),
    ('{"limits": {"pids": 1}}', ["limits.pids: must be at least 2, got 1"]),
    ('{"limits": {"nofile": 8}}', ["limits.nofile: must be between 16 and 1048576, got 8"]),
    ('{"limits": {"execs": 0}}', ["limits.execs: must be at least 1"]),
    ('{"limits": {"cpus": 0}}', ["limits.cpus: must be more than 0 and at most 1024"]),
    ('{"limits": {"cpus": 2000}}', ["limits.cpus: must be more than 0 and at most 1024"]),
    ('{"commands": {"allow": ["ls"]}}', ["commands.allow[0]: not an absolute path"]),
    ('{"files": {"write": ["/workspace/../etc"]}}', ['files.write[0]: ".." is not allowed']),
    ('{"files": {"deny": ["/workspace/[.env"]}}', ['files.deny[0]: unclosed "[" in pattern']),
    ('{"network": {"mode": "open"}}', ['network.mode: expected "none", "allow" or "host", got "open"']),
    ('{"enforcement": "lax"}', ['enforcement: expected "strict" or "best-effort", got "lax"']),
    # bad number forms
    ('{"limits": {"memory": -1}}', ["limits.memory: must not be negative, got -1"]),
    ('{"limits": {"pids": 0.5}}', ["limits.pids: expected an integer, got 0.5"]),
    ('{"limits": {"wall": 1e400}}', ["limits.wall: line 1 column", "real number overflow"]),
    ('{"limits": {"memory": 18446744073709551616}}', ["limits.memory: line 1 column", "too big integer"]),
    ('{"limits": {"pids": 01}}', ["limits.pids: line 1 column"]),
    ('{"limits": {"cpus": NaN}}', ["limits.cpus: line 1 column"]),
    # syntax, duplicates, NUL
    ('{"limits": {"wall": "1s", "wall": "2s"}}', ["limits: line 1 column", "duplicate object key"]),
    ('{"commands": {}, "commands": {}}', ["line 1 column", "duplicate object key"]),
    ('{"files": {"read": ["/a\\u0000b"]}}', ["files.read[0]: line 1 column", "NUL"]),
    ('{\n  "limits": {\n    "memory": "1g",\n  }\n}', ["limits: line 4 column 3"]),
    ('{} {}', ["line 1 column 4: end of file expected"]),
    ('', ["line 1 column 0"]),
])
def test_check_refuses(tmp_path, text, want):
    check_refused(tmp_path, text, *want)


def test_refuses_invalid_utf8(tmp_path):
    check_refused(tmp_path, b'{"files": {"read": ["/\xff"]}}', "files.read[0]: line 1 column")


def test_refuses_huge_file(tmp_path):
    text = '{"files": {"read": [' + ", ".join(['"/data"'] * 200000) + "]}}"
    assert len(text) > 1 << 20
    line = check_refused(tmp_path, text)
    assert line.endswith(": file is larger than 1 MiB")


@pytest.mark.parametrize("text", ["[" * 100000 + "]" * 100000, '{"a":' * 100000],
                         ids=["brackets", "objects"])
def test_refuses_deep_nesting(tmp_path, text):
    check_refused(tmp_path, text, "nested deeper than 8 levels")


def test_refuses_long_list(tmp_path):
    text = json.dumps({"commands": {"deny": ["/usr/bin/x"] * 4097}})
    check_refused(tmp_path, text, "commands.deny: more than 4096 entries")


def test_refuses_missing_and_special_files(tmp_path):
    r = aegis("policy", "check", str(tmp_path / "nope.json"))
    assert r.returncode == 125 and r.stderr.count("\n") == 1
    assert "No such file or directory" in r.stderr
    r = aegis("policy", "show", str(tmp_path))
    assert r.returncode == 125 and "not a regular file" in r.stderr


def test_file_name_with_newline_stays_one_line(tmp_path):
    path = write(tmp_path, '{"comands": 1}', "a\nb.json")
    r = aegis("policy", "check", path)
    assert r.returncode == 125
    assert r.stderr.count("\n") == 1 and "unknown field" in r.stderr


# ---- network -----------------------------------------------------------------

NET = {"network": {
    "mode": "allow",
    "allow": ["GitHub.com.", "*.githubusercontent.com:443", "10.0.0.0/8:8080", "[2001:DB8::1]:443",
              "[2001:db8::/32]"],
    "deny": ["evil.example.com", "169.254.169.254"],
    "hosts": {"b.internal": "2001:db8:0::5", "API.internal": "10.1.2.3"},
}}


def test_check_network_policy(tmp_path):
    path = write(tmp_path, json.dumps(NET))
    r = aegis("policy", "check", path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    first, rest = r.stdout.split("\n", 1)
    assert first == f"{path}: ok"
    net = json.loads(rest)["network"]
    assert list(net) == ["mode", "allow", "deny", "hosts"]
    assert net == {
        "mode": "allow",
        "allow": ["github.com", "*.githubusercontent.com:443", "10.0.0.0/8:8080", "[2001:db8::1]:443",
                  "[2001:db8::/32]"],
        "deny": ["evil.example.com", "169.254.169.254"],
        "hosts": {"api.internal": "10.1.2.3", "b.internal": "2001:db8::5"},
    }
    # hosts sorted by name: the order of an object's keys is no part of the policy
    assert rest.index('"api.internal"') < rest.index('"b.internal"')


@pytest.mark.parametrize("net", [
    {"mode": "allow", "allow": ["github.com:443"], "hosts": {"api.test": "127.0.0.1"}},
    {"mode": "allow"},
    {"mode": "host"},
    {"mode": "none", "allow": [], "deny": [], "hosts": {}},
])
def test_network_effect_is_a_fixed_point(tmp_path, net):
    first = aegis("policy", "show", write(tmp_path, json.dumps({"network": net})))
    assert first.returncode == 0, first.stderr
    again = aegis("policy", "show", write(tmp_path, first.stdout, "effect.json"))
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert json.loads(first.stdout)["network"]["mode"] == net["mode"]


NET_REFUSED = [
    ({"mode": "allow", "allow": ["ok.com", "exa mple.com"]},
     'network.allow[1]: not a rule: "exa mple.com" (a name, *.name, an IP or CIDR, with optional :port)'),
    ({"mode": "allow", "allow": ["a.com:70000"]}, 'network.allow[0]: not a port (1 to 65535): "a.com:70000"'),
    ({"mode": "allow", "allow": ["2001:db8::1"]}, "network.allow[0]: an IPv6 address goes in brackets"),
    ({"mode": "allow", "allow": ["10.1.2"]}, "network.allow[0]: looks like an IPv4 address but is not one"),
    ({"mode": "allow", "allow": ["10.1.2.3/8"]}, "network.allow[0]: address bits are set after the prefix"),
    ({"mode": "allow", "deny": ["10.0.0.0/33"]}, "network.deny[0]: not a prefix length (0 to 32)"),
    ({"mode": "allow", "deny": ["[2001:db8::/200]"]}, "network.deny[0]: not a prefix length (0 to 128)"),
    ({"mode": "allow", "deny": ["https://a.com/"]}, "network.deny[0]: a URL is not a rule"),
    ({"mode": "allow", "allow": ["-a.com"]}, 'network.allow[0]: a label starts or ends with "-"'),
    ({"mode": "allow", "allow": ["a" * 64 + ".com"]}, "network.allow[0]: a label is longer than 63 bytes"),
    ({"mode": "allow", "allow": [1]}, "network.allow[0]: expected a string, got integer"),
    ({"mode": "allow", "allow": "a.com"}, "network.allow: expected a list of strings, got string"),
    ({"allow": ["github.com"]}, 'network.allow: rules need "mode": "allow" (the mode is "none")'),
    ({"mode": "host", "deny": ["github.com"]}, 'network.deny: rules need "mode": "allow" (the mode is "host")'),
    ({"mode": "none", "hosts": {"a": "10.0.0.1"}}, 'network.hosts: entries need "mode": "allow"'),
    ({"mode": "allow", "hosts": ["a=10.0.0.1"]}, 'network.hosts: expected an object of "name": "IP", got array'),
    ({"mode": "allow", "hosts": {"a": 1}}, 'network.hosts["a"]: expected a string, got integer'),
    ({"mode": "allow", "hosts": {"a": "10.1.2"}}, 'network.hosts["a"]: not an IP address: "10.1.2"'),
    ({"mode": "allow", "hosts": {"a": "[::1]"}}, 'network.hosts["a"]: not an IP address: "[::1]"'),
    ({"mode": "allow", "hosts": {"*.a": "10.0.0.1"}}, 'network.hosts: not a host name: "*.a"'),
    ({"mode": "allow", "hosts": {"a:80": "10.0.0.1"}}, 'network.hosts: not a host name: "a:80"'),
    ({"mode": "allow", "hosts": {"A": "10.0.0.1", "a.": "10.0.0.2"}}, 'network.hosts: "a." is given twice'),
    ({"mode": "open"}, 'network.mode: expected "none", "allow" or "host", got "open"'),
]


@pytest.mark.parametrize("net,want", NET_REFUSED, ids=[w.split(":")[0] + str(i) for i, (_, w) in
                                                        enumerate(NET_REFUSED)])
def test_check_refuses_network(tmp_path, net, want):
    check_refused(tmp_path, json.dumps({"network": net}), want)


# `aegis run` network flags: checked by the same code as the policy, one line, 125.
@pytest.mark.parametrize("opts,want", [
    (("--net", "open"), "aegis: --net: expected none, allow or host, got 'open'"),
    (("--net", "none", "--net", "host"), "aegis: --net given twice"),
    (("--net", "allow", "--allow", "exa mple.com"),
     'aegis: --allow: not a rule: "exa mple.com" (a name, *.name, an IP or CIDR, with optional :port)'),
    (("--net", "allow", "--deny", "10.1.2.3/8"), "aegis: --deny: address bits are set after the prefix"),
    (("--net", "allow", "--allow", "a\nb"), 'aegis: --allow: not a rule: "a\\nb"'),
    (("--net", "allow", "--host", "api"), 'aegis: --host: expected NAME=IP: "api"'),
    (("--net", "allow", "--host", "api=10.1.2"), 'aegis: --host: not an IP address: "10.1.2"'),
    (("--net", "allow", "--host", "*.api=10.1.2.3"), 'aegis: --host: not a host name: "*.api"'),
    (("--net", "allow", "--host", "api=10.0.0.1", "--host", "API.=10.0.0.2"),
     "aegis: --host: 'API' is already mapped"),
    (("--allow", "github.com"), 'aegis: --allow needs --net allow (the policy\'s mode is "none")'),
    (("--deny", "github.com"), "aegis: --deny needs --net allow"),
    (("--host", "api=10.0.0.1"), "aegis: --host needs --net allow"),
    (("--net", "host", "--allow", "github.com"), "aegis: --allow needs --net allow (not --net host)"),
    (("--net", "none", "--host", "api=10.0.0.1"), "aegis: --host needs --net allow (not --net none)"),
])
def test_run_network_flags_refused(opts, want):
    p = sandboxed("true", opts=opts)
    assert p.returncode == 125, p
    assert p.stdout == "" and p.stderr.count("\n") == 1 and p.stderr.startswith(want), p.stderr


def run_start(tmp_path, opts, name):
    """The run.start event of `aegis run OPTS -- true` (written whether or
    not the run then succeeds)."""
    log = tmp_path / f"{name}.jsonl"
    sandboxed("true", opts=(*opts, "--audit", str(log)), timeout=60)
    with open(log) as f:
        return [e for e in map(json.loads, f) if e["type"] == "run.start"][0]


def test_run_network_flags_extend_the_policy(tmp_path):
    """--net allow --allow/--deny/--host on top of a policy has the effect
    (digest) of one policy file holding all of it, in whatever spelling."""
    base = write(tmp_path, json.dumps({"network": {"mode": "allow", "allow": ["github.com"]}}), "base.json")
    whole = write(tmp_path, json.dumps({"network": {
        "mode": "allow", "allow": ["github.com", "*.githubusercontent.com:443"],
        "deny": ["evil.github.com"], "hosts": {"api.internal": "10.1.2.3"}}}), "whole.json")
    flags = ("--allow", "*.GitHubUserContent.com:443", "--deny", "evil.github.com.",
             "--host", "API.internal=10.1.2.3")
    a = run_start(tmp_path, ("--policy", base, "--net", "allow", *flags), "a")
    b = run_start(tmp_path, ("--policy", base, *flags), "b")
    c = run_start(tmp_path, ("--policy", whole), "c")
    d = run_start(tmp_path, ("--net", "allow", "--allow", "github.com", *flags), "d")
    assert a["network"] == b["network"] == c["network"] == d["network"] == "allow"
    assert a["policy"]["digest"] == b["policy"]["digest"] == c["policy"]["digest"] == d["policy"]["digest"]
    assert a["policy"]["name"] == base


def test_run_net_flag_replaces_the_mode(tmp_path):
    """--net none over an allow policy: no network, and its rules go with
    the mode (the effect is the default's)."""
    pol = write(tmp_path, json.dumps({"network": {"mode": "allow", "allow": ["github.com"],
                                                   "hosts": {"api": "10.0.0.1"}}}))
    a = run_start(tmp_path, ("--policy", pol, "--net", "none"), "a")
    b = run_start(tmp_path, (), "b")
    assert a["network"] == "none" and a["policy"]["digest"] == b["policy"]["digest"]
    p = sandboxed("true", opts=("--policy", pol, "--net", "none"))
    assert p.returncode == 0, p


def test_run_usage_lists_network_flags():
    r = aegis("run", "--help")
    assert r.returncode == 0
    for flag in ("--net MODE", "--allow RULE", "--deny RULE", "--host NAME=IP"):
        assert flag in r.stdout


@pytest.mark.parametrize("args,want", [
    ((), "missing subcommand"),
    (("check",), "missing FILE"),
    (("show",), "missing NAME or FILE"),
    (("check", "a", "b"), "one FILE only"),
    (("frobnicate",), "unknown subcommand"),
    (("show", "-x"), "unknown option"),
])
def test_usage_errors(args, want):
    r = aegis("policy", *args)
    assert r.returncode == 125
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and want in r.stderr, r.stderr


def test_help():
    r = aegis("policy", "--help")
    assert r.returncode == 0 and "aegis policy check FILE" in r.stdout
    r = aegis("policy", "check", "--help")
    assert r.returncode == 0 and "usage:" in r.stdout
