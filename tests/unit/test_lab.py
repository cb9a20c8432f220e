"""The lab, the benchmark's make targets, the help (no root needed)."""

import shutil
import subprocess

import pytest
from conftest import NSPOD, REPO


def make_n(target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True)


def test_vm_test_and_bench_targets_resolve() -> None:
    r = make_n("vm-test")
    assert r.returncode == 0 and "vagrant up" in r.stdout and "sudo make test" in r.stdout
    r = make_n("bench")
    assert r.returncode == 0 and "bench/bench.py" in r.stdout
    assert make_n("vm-destroy").returncode == 0


def test_vagrantfile_validates() -> None:
    if shutil.which("vagrant") is None:
        pytest.skip("vagrant is not installed (make lab-setup)")
    r = subprocess.run(["vagrant", "validate"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    if "No usable default provider" in r.stdout + r.stderr:
        # vagrant without a provider plugin (make lab-setup installs vagrant-libvirt)
        r = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "validated successfully" in r.stdout


def test_every_verb_has_help_from_the_command_line() -> None:
    from nspod.cli import VERBS

    for name in VERBS:
        r = subprocess.run([str(NSPOD), name, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.startswith(f"usage: nspod {name}"), name
        assert "exit codes" in r.stdout, name
    r = subprocess.run([str(NSPOD), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and all(name in r.stdout for name in VERBS)
    r = subprocess.run([str(NSPOD), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("nspod ")


def test_bench_setup_and_lab_setup_are_not_part_of_setup() -> None:
    # the comparison tools and vagrant are not needed to run nspod
    setup = make_n("setup")
    assert setup.returncode == 0
    for tool in ("podman", "catatonit", "tini", "vagrant", "matplotlib"):
        assert tool not in setup.stdout, tool
    bench_setup = make_n("bench-setup")
    assert bench_setup.returncode == 0
    assert all(t in bench_setup.stdout for t in ("podman", "catatonit", "tini", "matplotlib"))
    lab_setup = make_n("lab-setup")
    assert lab_setup.returncode == 0 and "vagrant" in lab_setup.stdout


def test_every_option_of_every_verb_says_what_it_does() -> None:
    from nspod.args import usage
    from nspod.cli import VERBS

    for name, verb in VERBS.items():
        assert verb.summary.strip(), name
        text = usage(verb)
        for opt in verb.options:
            assert opt.help.strip(), f"{name} {opt.names}"
            assert opt.help in text, f"{name} {opt.names}"
            assert all(n in text for n in opt.names), f"{name} {opt.names}"
        assert "exit codes:" in text, name


def test_unknown_verb_and_no_verb_are_usage_errors() -> None:
    r = subprocess.run([str(NSPOD), "frobnicate"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "nspod: unknown verb 'frobnicate' (see nspod --help)"
    r = subprocess.run([str(NSPOD)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("usage: nspod")
    r = subprocess.run([str(NSPOD), "join", "--help"], capture_output=True, text=True)
    assert "126" in r.stdout and "127" in r.stdout and "128+N" in r.stdout
