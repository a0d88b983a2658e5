"""AEGIS_BACKEND: the default backend of `aegis run`, `aegis instance start`
and aegisd's API creates (docs/cli.md, docs/vm.md). A flag or a "backend"
field always wins; a bad value is refused in one line, before anything runs.
"""
import json
import os
import platform

from conftest import AEGIS, api, daemon_env, instance_info, run  # noqa: F401 (daemon_env: fixture)
from test_vm import guest_files  # noqa: F401 (the autouse fixture: vm-guest.sh for this build)

ACCEL = os.environ.get("AEGIS_TEST_VM_ACCEL", "tcg")


def with_backend(env, value):
    env = dict(env, AEGIS_VM_ACCEL=ACCEL)
    env["AEGIS_BACKEND"] = value
    return env


def test_a_bad_value_is_refused_in_one_line_by_run_instance_start_and_aegisd(daemon_env):
    bad = with_backend(daemon_env, "kvm")
    for argv in (["run", "--", "true"], ["instance", "start", "--name", "x", "--", "true"]):
        p = run([AEGIS, *argv], env=bad)
        assert p.returncode == 125, (argv, p)
        assert p.stderr.strip().count("\n") == 0 and "AEGIS_BACKEND must be ns or vm, not 'kvm'" in p.stderr, p.stderr
    p = run([AEGIS, "up"], env=bad)
    assert p.returncode != 0 and "AEGIS_BACKEND must be ns or vm" in p.stderr, p
    # the same commands run once the value is good: the refusal was the value's
    assert run([AEGIS, "run", "--", "true"], env=with_backend(daemon_env, "ns")).returncode == 0


def test_run_defaults_to_the_vm_and_the_flag_wins():
    env = with_backend(os.environ, "vm")
    p = run([AEGIS, "run", "--json", "--", "uname", "-r"], env=env, timeout=180)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["backend"] == "vm" and res["stdout"].strip() != platform.release(), res
    p = run([AEGIS, "run", "--backend", "ns", "--", "uname", "-r"], env=env)
    assert p.returncode == 0 and p.stdout.strip() == platform.release(), p


def test_instances_get_the_default_and_store_it(daemon_env):
    env = with_backend(daemon_env, "vm")
    assert run([AEGIS, "up"], env=env).returncode == 0
    # an API create without "backend": the daemon's default, stored
    status, body = api(env, "POST", "/v1/instances", {"name": "api-made", "argv": ["sleep", "600"]})
    assert status in (200, 201), body
    assert instance_info(env, "api-made")["backend"] == "vm"
    # the CLI sends its own default (here ns) and the flag over it
    p = run([AEGIS, "instance", "start", "--name", "cli-ns", "--", "sleep", "600"], env=with_backend(env, "ns"))
    assert p.returncode == 0, p.stderr
    assert instance_info(env, "cli-ns")["backend"] == "ns"
    p = run([AEGIS, "instance", "start", "--name", "cli-flag", "--backend", "ns", "--", "sleep", "600"], env=env)
    assert p.returncode == 0, p.stderr
    assert instance_info(env, "cli-flag")["backend"] == "ns"
    with open(os.path.join(env["AEGIS_STATE_DIR"], "instances", "api-made", "config.json")) as f:
        assert json.load(f)["backend"] == "vm"
