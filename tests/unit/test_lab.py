"""The lab, setup's and the benchmark's make targets, the help (no root needed)."""

import os
import shutil
import subprocess
import sys
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


def make_n(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`make -n`: the recipe, not run (no "Entering directory" under a parent make)."""
    return subprocess.run(["make", "-n", "--no-print-directory", target, *args], cwd=REPO,
                          capture_output=True, text=True)


def test_vm_targets_run_the_lab_runner(tmp_path: Path) -> None:
    assert "tools/lab test" in make_n("vm-test").stdout
    assert "tools/lab destroy" in make_n("vm-destroy").stdout
    assert "tools/lab-box bookworm" in make_n("lab-box").stdout
    assert "tools/lab-box trixie" in make_n("lab-box", "DIST=trixie").stdout


def test_the_lab_is_not_part_of_the_default_run() -> None:
    for target in ("setup", "test"):
        out = make_n(target).stdout
        assert "tools/lab" not in out and "qemu" not in out, target
    assert "vm-test" not in (REPO / ".ci" / "run").read_text()


def test_box_recipe_and_runner_are_valid() -> None:
    """The cheap check CI runs: the scripts parse, and the box has what the runner
    and Vagrant need (a vagrant user with sudo and keys, sshd, a kernel to boot)."""
    for script in ("tools/lab-box", "tools/lab"):
        r = subprocess.run(["bash", "-n", script], cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 0, (script, r.stderr)
    box = (REPO / "tools" / "lab-box").read_text()
    for need in ("debootstrap", "linux-image-cloud-amd64", "openssh-server", "useradd -m",
                 "NOPASSWD: ALL", "authorized_keys", "vagrant.pub", "systemctl enable",
                 "mkfs.ext4", "qemu-img convert -O qcow2", ".vmlinuz", ".initrd",
                 "metadata.json", "print-apt-packages", "/etc/pip.conf"):
        assert need in box, need
    runner = (REPO / "tools" / "lab").read_text()
    for need in ("-kernel", "-initrd", "hostfwd=tcp:127.0.0.1", "tcg", "kvm",
                 "sudo make setup", "sudo make test", "NSPOD_LAB_ACCEL"):
        assert need in runner, need
    # the box installs exactly what `make setup` would
    r = subprocess.run(["make", "-s", "--no-print-directory", "print-apt-packages"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split() == apt_packages()


def test_setup_repairs_a_venv_a_failed_setup_left(tmp_path: Path) -> None:
    """A venv made before pip/setuptools were upgraded is finished by the next setup."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)  # made, never upgraded
    r = make_n("venv", f"VENV={venv}")
    assert r.returncode == 0 and "--upgrade pip setuptools" in r.stdout
    (venv / ".nspod-ready").touch()  # the upgrade went through
    r = make_n("venv", f"VENV={venv}")
    assert r.returncode == 0 and "--upgrade pip setuptools" not in r.stdout


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
    assert calls == ["apt-get install -y -q --no-install-recommends debootstrap "
                     "qemu-system-x86 qemu-utils e2fsprogs openssh-client rsync"]


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
