"""`aegis run --audit` and `aegis audit verify|show`: the hash-chained log
(DESIGN.md §7) detects edits, removals, reordering and truncation, and says
at which line."""
import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import AEGIS, aegis, sandboxed

ZERO = "0" * 64


def one_line_error(proc, *needles):
    """Aegis errors are exactly one line on stderr, starting 'aegis: '."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aegis: "), proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def read_lines(path):
    with open(path, "rb") as f:
        return f.read().splitlines(keepends=True)


def write_lines(path, lines):
    with open(path, "wb") as f:
        f.writelines(lines)


@pytest.fixture
def log(tmp_path):
    """A log written by two real runs; tests tamper with copies of it."""
    path = str(tmp_path / "audit.log")
    p1 = sandboxed("echo", "first-run", opts=("--audit", path))
    assert p1.returncode == 0 and p1.stdout == "first-run\n", p1
    p2 = sandboxed("sh", "-c", "exit 3", opts=("--audit", path))
    assert p2.returncode == 3, p2
    return path


@pytest.fixture
def copy(log, tmp_path):
    """A fresh copy of the two-run log, to be tampered with."""
    path = str(tmp_path / "tampered.log")
    shutil.copyfile(log, path)
    return path


def test_two_runs_chain_and_verify_ok(log):
    lines = read_lines(log)
    assert len(lines) >= 4
    assert oct(os.stat(log).st_mode & 0o777) == "0o600"

    # The format, checked independently of the C code.
    prev = ZERO
    events = []
    for i, raw in enumerate(lines):
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1
        assert raw.isascii()
        body = raw[:-1]
        ev = json.loads(body)
        keys = list(ev)
        assert keys[:4] == ["v", "seq", "ts", "type"] and keys[-1] == "prev", keys
        assert ev["v"] == 1 and ev["seq"] == i and ev["prev"] == prev
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", ev["ts"]), ev["ts"]
        prev = hashlib.sha256(body).hexdigest()
        events.append(ev)
    types = [e["type"] for e in events]
    assert types.count("run.start") == 2 and types.count("run.end") == 2, types
    assert types[0] == "run.start" and types[-1] == "run.end", types
    starts = [e for e in events if e["type"] == "run.start"]
    assert starts[0]["argv"] == ["echo", "first-run"]
    assert starts[1]["argv"] == ["sh", "-c", "exit 3"]
    ends = [e for e in events if e["type"] == "run.end"]
    assert ends[1]["exit_code"] == 3

    p = aegis("audit", "verify", log)
    assert p.returncode == 0, p
    assert p.stdout == f"{log}: ok, {len(lines)} events, hash chain intact\n", p.stdout
    assert p.stderr == ""


def tamper_case(path, line, *needles):
    p = aegis("audit", "verify", path)
    assert p.returncode == 1, p
    assert p.stdout == ""
    msg = one_line_error(p, f"aegis: audit {path}: line {line}: ", *needles)
    return msg


def test_flipped_byte_is_caught_by_the_next_line(copy):
    lines = read_lines(copy)
    # Change one character of line 2's "ts" (still valid JSON, still a
    # plausible event): only the chain can tell.
    m = re.search(rb'"ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:(\d)', lines[1])
    digit = m.group(1)
    lines[1] = lines[1][:m.start(1)] + (b"1" if digit != b"1" else b"2") + lines[1][m.end(1):]
    write_lines(copy, lines)
    tamper_case(copy, 3, "hash chain broken")


def test_flipped_byte_breaking_json_is_reported_on_its_line(copy):
    lines = read_lines(copy)
    lines[2] = b"[" + lines[2][1:]
    write_lines(copy, lines)
    tamper_case(copy, 3, "not valid JSON")


def test_deleted_line_is_reported(copy):
    lines = read_lines(copy)
    del lines[1]
    write_lines(copy, lines)
    tamper_case(copy, 2, "sequence jumps from 0 to 2")


def test_deleted_and_renumbered_line_is_reported(copy):
    # Removing line 2 and renumbering the rest keeps seq consistent: the
    # hash chain still catches it.
    lines = read_lines(copy)
    del lines[1]
    for i in range(1, len(lines)):
        lines[i] = re.sub(rb'"seq":\d+,', b'"seq":%d,' % i, lines[i], count=1)
    write_lines(copy, lines)
    tamper_case(copy, 2, "hash chain broken")


def test_reordered_lines_are_reported(copy):
    lines = read_lines(copy)
    lines[1], lines[2] = lines[2], lines[1]
    write_lines(copy, lines)
    tamper_case(copy, 2, "sequence")


def test_truncated_last_line_is_reported_and_not_extended(copy):
    lines = read_lines(copy)
    n = len(lines)
    lines[-1] = lines[-1][: len(lines[-1]) // 2]
    write_lines(copy, lines)
    tamper_case(copy, n, "incomplete last line (truncated)")
    # A run never extends a damaged log (that would bury the damage).
    before = open(copy, "rb").read()
    p = sandboxed("true", opts=("--audit", copy))
    assert p.returncode == 125, p
    one_line_error(p, copy, "last line is not a complete event (truncated?)")
    assert open(copy, "rb").read() == before


def test_show_prints_a_timeline(log):
    p = aegis("audit", "show", log)
    assert p.returncode == 0, p
    assert p.stderr == ""
    out = p.stdout.splitlines()
    assert len(out) == len(read_lines(log))
    for line in out:
        assert re.match(r"\d\d:\d\d:\d\d\.\d{3}  \S+", line), line
    start = [l for l in out if "  run.start  " in l]
    assert len(start) == 2, out
    assert re.match(r'\d\d:\d\d:\d\d\.\d{3}  run\.start  id=[0-9a-f]+ argv=\["echo","first-run"\] ', start[0]), start[0]
    assert 'argv=["sh","-c","exit 3"]' in start[1], start[1]
    assert any("  run.end  " in l and "exit_code=3" in l for l in out), out
    for key in ("seq=", "prev=", "ts="):
        assert not any(f" {key}" in l for l in out)


def test_show_marks_unparseable_lines(copy):
    lines = read_lines(copy)
    lines.insert(1, b"garbage\n")
    write_lines(copy, lines)
    p = aegis("audit", "show", copy)
    assert p.returncode == 0, p
    assert p.stdout.splitlines()[1] == "?? unparseable line 2"


def test_concurrent_runs_keep_one_chain(tmp_path):
    path = str(tmp_path / "shared.log")
    procs = [subprocess.Popen([AEGIS, "run", "--audit", path, "--", "true"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    for pr in procs:
        _, err = pr.communicate(timeout=60)
        assert pr.returncode == 0, err
    p = aegis("audit", "verify", path)
    assert p.returncode == 0, p
    n = len(read_lines(path))
    assert n >= 8 and f": ok, {n} events, hash chain intact" in p.stdout


def test_missing_file_is_125_one_line(tmp_path):
    missing = str(tmp_path / "nope.log")
    for sub in ("verify", "show"):
        p = aegis("audit", sub, missing)
        assert p.returncode == 125, p
        assert p.stdout == ""
        one_line_error(p, missing, "No such file")


def test_directory_is_125_one_line(tmp_path):
    p = aegis("audit", "verify", str(tmp_path))
    assert p.returncode == 125, p
    one_line_error(p, str(tmp_path))


def test_empty_file_is_intact(tmp_path):
    path = tmp_path / "empty.log"
    path.write_bytes(b"")
    p = aegis("audit", "verify", str(path))
    assert p.returncode == 0 and "ok, 0 events" in p.stdout, p


@pytest.mark.parametrize("args, needle", [
    ((), "missing subcommand"),
    (("frob", "x"), "unknown subcommand 'frob'"),
    (("verify",), "missing FILE"),
    (("show",), "missing FILE"),
    (("verify", "a", "b"), "unexpected argument 'b'"),
    (("verify", "--frob", "a"), "unknown option '--frob'"),
])
def test_usage_errors_are_125_one_line(args, needle):
    p = aegis("audit", *args)
    assert p.returncode == 125, p
    assert p.stdout == ""
    one_line_error(p, needle)


def test_help_is_0():
    for args in (("--help",), ("verify", "--help")):
        p = aegis("audit", *args)
        assert p.returncode == 0, p
        assert "aegis audit verify FILE" in p.stdout and "aegis audit show FILE" in p.stdout
