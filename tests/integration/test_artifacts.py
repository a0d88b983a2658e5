"""--artifacts, --workspace-mode overlay, aegis apply, aegis replay."""
import hashlib
import json
import os
import shutil

from conftest import AEGIS, TEST_BACKEND, run, sandboxed


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def make_ws(root):
    ws = root / "ws"
    (ws / "sub").mkdir(parents=True)
    (ws / "a.txt").write_text("line1\n")
    (ws / "sub" / "keep.txt").write_text("keep\n")
    (ws / "del.txt").write_text("gone\n")
    return ws


SCRIPT = "echo line2 >> a.txt; echo new > c.txt; rm del.txt; mkdir d; echo x > d/e; echo out; echo err >&2"


def overlay_run(tmp_path, script=SCRIPT, extra=()):
    ws = make_ws(tmp_path)
    art = tmp_path / "art"
    p = sandboxed("sh", "-c", script,
                  opts=("--workspace", str(ws), "--workspace-mode", "overlay", "--artifacts", str(art), *extra))
    return ws, art, p


def test_overlay_leaves_the_host_untouched_and_lists_changes(tmp_path):
    ws, art, p = overlay_run(tmp_path)
    assert p.returncode == 0, p
    assert (ws / "a.txt").read_text() == "line1\n" and (ws / "del.txt").exists()
    assert not (ws / "c.txt").exists() and not (ws / "d").exists()
    changes = {c["path"]: c for c in json.loads((art / "changes.json").read_text())["changes"]}
    assert changes["a.txt"]["kind"] == "modified"
    assert changes["a.txt"]["before_sha256"] == sha(ws / "a.txt")
    assert changes["a.txt"]["sha256"] == hashlib.sha256(b"line1\nline2\n").hexdigest()
    assert changes["c.txt"]["kind"] == "added" and changes["c.txt"]["size"] == 4
    assert changes["del.txt"]["kind"] == "deleted"
    assert changes["d"]["kind"] == "added" and changes["d/e"]["kind"] == "added"
    assert "sub/keep.txt" not in changes
    diff = (art / "changes.diff").read_text()
    assert "--- a/a.txt" in diff and "+line2" in diff and "+new" in diff


def tree(root):
    """Every name under root: a directory, a file with its content, a link with its target."""
    found = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                found[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                found[rel] = ("dir",)
            else:
                found[rel] = ("file", open(path, "rb").read())
    return found


# A directory with entries removed, a file removed and made a directory, a
# directory with entries removed and made again: each needs the overlay to
# mark a whiteout or an opaque directory in its upper layer (in a vm guest,
# whose 6.1 tmpfs holds no user.* xattrs, the guest's root builds it with
# trusted.* ones).
REMAKE = ("rm -r gone && rm a.txt && mkdir a.txt && rm -r remade && mkdir remade && echo new > remade/new && "
          "ls -A remade; ls -A a.txt; echo done")


def test_overlay_removes_directories_with_entries_and_remakes_names(tmp_path):
    ws = make_ws(tmp_path)
    (ws / "gone" / "deep").mkdir(parents=True)
    (ws / "gone" / "one").write_text("1\n")
    (ws / "gone" / "deep" / "two").write_text("2\n")
    (ws / "remade").mkdir()
    (ws / "remade" / "old").write_text("old\n")
    before = tree(ws)
    # the same commands run directly on a copy: the tree apply must give
    direct = tmp_path / "direct"
    shutil.copytree(ws, direct, symlinks=True)
    d = run(["sh", "-c", REMAKE], cwd=direct)
    assert d.returncode == 0 and d.stdout == "new\ndone\n", d
    assert tree(direct) != before
    art = tmp_path / "art"
    p = sandboxed("sh", "-c", REMAKE, opts=("--workspace", str(ws), "--workspace-mode", "overlay",
                                             "--artifacts", str(art)))
    assert p.returncode == 0 and p.stdout == d.stdout, (TEST_BACKEND, p)
    assert tree(ws) == before  # the host's workspace is untouched
    doc = json.loads((art / "changes.json").read_text())
    assert doc["complete"] is True
    changes = {c["path"]: (c["kind"], c["type"]) for c in doc["changes"]}
    # gone's entries go with it; a.txt and remade lose what the host has in them
    assert changes == {"gone": ("deleted", "any"), "a.txt": ("replaced", "dir"),
                       "remade": ("replaced", "dir"), "remade/new": ("added", "file")}, (TEST_BACKEND, changes)
    a = run([AEGIS, "apply", str(art)])
    assert a.returncode == 0, a
    assert tree(ws) == tree(direct)


def test_artifacts_hold_output_result_and_audit(tmp_path):
    ws, art, p = overlay_run(tmp_path)
    assert (art / "stdout").read_text() == "out\n" and (art / "stderr").read_text() == "err\n"
    assert p.stdout == "out\n"  # still passed through
    result = json.loads((art / "result.json").read_text())
    assert result["argv"] == ["sh", "-c", SCRIPT] and result["workspace"]["mode"] == "overlay"
    assert result["result"]["exit_code"] == 0 and result["limits"]["memory_bytes"] > 0
    assert run([AEGIS, "audit", "verify", str(art / "audit.jsonl")]).returncode == 0
    kinds = [json.loads(l)["type"] for l in open(art / "audit.jsonl")]
    assert kinds[0] == "run.start" and kinds[-1] == "run.end" and "exec" in kinds
    changed = [json.loads(l) for l in open(art / "audit.jsonl") if '"file.change"' in l]
    assert {c["path"] for c in changed} >= {"a.txt", "c.txt", "del.txt", "d/e"}


def test_apply_brings_the_changes_in_once(tmp_path):
    ws, art, p = overlay_run(tmp_path)
    a = run([AEGIS, "apply", str(art)])
    assert a.returncode == 0 and "applied 5 changes" in a.stdout, a  # a, c, del, d, d/e
    assert (ws / "a.txt").read_text() == "line1\nline2\n" and (ws / "c.txt").read_text() == "new\n"
    assert not (ws / "del.txt").exists() and (ws / "d" / "e").read_text() == "x\n"
    again = run([AEGIS, "apply", str(art)])
    assert again.returncode == 125 and "already" in again.stderr


def test_apply_refuses_when_the_workspace_moved_on(tmp_path):
    ws, art, p = overlay_run(tmp_path)
    (ws / "a.txt").write_text("edited by someone else\n")
    a = run([AEGIS, "apply", str(art)])
    assert a.returncode == 125 and "a.txt" in a.stderr and "nothing applied" in a.stderr
    assert len(a.stderr.strip().splitlines()) == 1
    assert not (ws / "c.txt").exists() and (ws / "del.txt").exists()


def test_apply_refuses_paths_leaving_the_workspace(tmp_path):
    """A changes.json edited to point outside (../, absolute, through a symlink) writes nothing."""
    ws, art, p = overlay_run(tmp_path, script="echo new > c.txt")
    outside = tmp_path / "outside.txt"
    os.symlink(str(tmp_path), ws / "link")
    doc = json.loads((art / "changes.json").read_text())
    for bad in ("../outside.txt", "/etc/passwd", "link/outside.txt"):
        doc["changes"] = [{"path": bad, "kind": "added", "type": "file", "size": 4, "sha256": "0" * 64}]
        (art / "changes.json").write_text(json.dumps(doc))
        a = run([AEGIS, "apply", str(art)])
        assert a.returncode == 125, (bad, a)
    assert not outside.exists()


def test_replay_runs_the_same_thing(tmp_path):
    art = tmp_path / "art"
    p = sandboxed("sh", "-c", "echo $FOO; pwd; hostname", opts=("--env", "FOO=bar", "--cwd", "/tmp",
                                                               "--hostname", "box", "--artifacts", str(art)))
    again = run([AEGIS, "replay", str(art)])
    assert again.returncode == p.returncode == 0
    assert again.stdout == p.stdout == "bar\n/tmp\nbox\n"


def test_replay_keeps_policy_and_limits(tmp_path):
    pol = tmp_path / "p.json"
    pol.write_text(json.dumps({"commands": {"deny": ["/usr/bin/whoami"]}, "limits": {"output": "16"}}))
    art = tmp_path / "art"
    script = "whoami 2>/dev/null || echo DENIED; echo 0123456789abcdef"
    first = sandboxed("sh", "-c", script, opts=("--policy", str(pol), "--artifacts", str(art)))
    again = run([AEGIS, "replay", str(art)])
    assert again.stdout == first.stdout == "DENIED\n012345678", again
    assert "output_truncated" in again.stderr


def test_overlay_needs_artifacts_and_a_writable_workspace(tmp_path):
    ws = make_ws(tmp_path)
    p = sandboxed("true", opts=("--workspace", str(ws), "--workspace-mode", "overlay"))
    assert p.returncode == 125 and "--artifacts" in p.stderr
    p = sandboxed("true", opts=("--workspace-mode", "overlay", "--artifacts", str(tmp_path / "x")))
    assert p.returncode == 125 and "--workspace" in p.stderr


def test_artifacts_dir_must_be_new_or_empty(tmp_path):
    art = tmp_path / "art"
    art.mkdir()
    (art / "precious").write_text("keep")
    p = sandboxed("true", opts=("--artifacts", str(art)))
    assert p.returncode == 125 and "not empty" in p.stderr
    assert (art / "precious").read_text() == "keep" and len(os.listdir(art)) == 1


def test_overlay_upper_is_bounded_by_disk(tmp_path):
    ws, art, p = overlay_run(tmp_path, script="head -c 50000000 /dev/zero > big; echo rc=$?",
                             extra=("--disk", "8m", "--json"))
    r = json.loads(p.stdout)
    assert r["limit"] == "disk_full", r


def test_rw_run_lists_its_changes(tmp_path):
    ws = make_ws(tmp_path)
    art = tmp_path / "art"
    p = sandboxed("sh", "-c", SCRIPT + "; ln -s /etc/shadow evil",
                  opts=("--workspace", str(ws), "--artifacts", str(art)))
    assert p.returncode == 0, p
    assert (ws / "a.txt").read_text() == "line1\nline2\n"  # rw: written in place
    doc = json.loads((art / "changes.json").read_text())
    assert doc["mode"] == "rw" and doc["complete"] is True
    changes = {c["path"]: c for c in doc["changes"]}
    assert changes["a.txt"]["kind"] == "modified" and changes["a.txt"]["sha256"] == sha(ws / "a.txt")
    assert changes["c.txt"]["kind"] == "added" and changes["del.txt"]["kind"] == "deleted"
    assert changes["d/e"]["kind"] == "added" and changes["evil"]["type"] == "symlink"
    diff = (art / "changes.diff").read_text()
    assert "+new" in diff and "root:" not in diff  # the symlink was not followed
    a = run([AEGIS, "apply", str(art)])
    assert a.returncode == 125 and "nothing to apply" in a.stderr


def test_replay_of_an_overlay_run_keeps_its_changes_beside(tmp_path):
    ws, art, p = overlay_run(tmp_path, script="echo again > r.txt")
    again = run([AEGIS, "replay", str(art)])
    assert again.returncode == 0, again
    beside = tmp_path / "art.replay"
    assert str(beside) in again.stderr
    assert [c["path"] for c in json.loads((beside / "changes.json").read_text())["changes"]] == ["r.txt"]
    assert not (ws / "r.txt").exists()
