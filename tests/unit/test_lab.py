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
