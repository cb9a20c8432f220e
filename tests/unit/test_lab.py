"""The lab, setup's and the benchmark's make targets, the help (no root needed)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import NSPOD, REPO


def make_with_stubs(tmp_path: Path, target: str, uid: int = 0,
                    *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Runs `make TARGET` for real, with apt-get, dpkg-query, sudo, systemctl, vagrant,
    id and the venv's python replaced by stubs that log their argv (nothing reaches the
    host's packages or services); returns make's result and the log.

    dpkg-query finds nothing installed, so `make apt` installs its whole list.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls"
    log.write_text("")
    for name in ("apt-get", "vagrant", "python", "systemctl"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n')
        stub.chmod(0o755)
    stubs = {
        "sudo": f'#!/bin/sh\necho "sudo $*" >> {log}\nexec "$@"\n',
        "id": f"#!/bin/sh\necho {uid}\n",
        "dpkg-query": "#!/bin/sh\nexit 1\n",
    }
    for name, text in stubs.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    r = subprocess.run(["make", "--no-print-directory", target, f"PY={bin_dir / 'python'}",
                        *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    return r, log.read_text().splitlines()


def apt_packages() -> list[str]:
    r = subprocess.run(["make", "--no-print-directory", "-s", "-f", "Makefile", "-f", "-",
                        "print-apt"], cwd=REPO, input="print-apt:\n\t@echo $(APT_PACKAGES)\n",
                       capture_output=True, text=True)
    return r.stdout.split()


def test_setup_as_root_needs_no_sudo(tmp_path: Path) -> None:
    r, calls = make_with_stubs(tmp_path, "apt", 0)
    assert r.returncode == 0, r.stderr
    assert calls == ["apt-get update -q",
                     "apt-get install -y -q --no-install-recommends " + " ".join(apt_packages()),
                     "systemctl disable --now docker-registry.service"]


def test_setup_as_a_user_goes_through_sudo(tmp_path: Path) -> None:
    r, calls = make_with_stubs(tmp_path, "apt", 1000)
    assert r.returncode == 0, r.stderr
    install = "apt-get install -y -q --no-install-recommends " + " ".join(apt_packages())
    off = "systemctl disable --now docker-registry.service"
    assert calls == ["sudo apt-get update -q", "apt-get update -q", "sudo " + install, install,
                     "sudo " + off, off]


def test_vm_test_brings_the_vm_up_and_runs_the_suite_in_it(tmp_path: Path) -> None:
    r, calls = make_with_stubs(tmp_path, "vm-test")
    assert r.returncode == 0, r.stderr
    assert calls == ["vagrant up", "vagrant rsync",
                     "vagrant ssh -c cd ~/nspod && sudo make setup && sudo make test"]
    r, calls = make_with_stubs(tmp_path, "vm-destroy")
    assert (r.returncode, calls) == (0, ["vagrant destroy -f"])


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


def test_bench_setup_and_lab_setup_are_not_part_of_setup(tmp_path: Path) -> None:
    # the comparison tools and vagrant are not needed to run nspod
    for tool in ("podman", "catatonit", "tini", "vagrant", "matplotlib"):
        assert tool not in apt_packages(), tool
    r, calls = make_with_stubs(tmp_path, "bench-setup", 0, "-o", "setup")
    assert r.returncode == 0, r.stderr
    assert calls == ["apt-get install -y -q --no-install-recommends podman runc catatonit tini",
                     "python -m pip install -q matplotlib"]
    r, calls = make_with_stubs(tmp_path, "lab-setup", 0)
    assert r.returncode == 0, r.stderr
    assert calls == ["apt-get install -y -q --no-install-recommends vagrant vagrant-libvirt"]


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
