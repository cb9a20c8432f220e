"""Issue 11: `sudo make install` puts nspod where root's PATH finds it; uninstall removes it."""

import subprocess
from pathlib import Path

import pytest
from conftest import REPO, PodEnv

pytestmark = pytest.mark.root


@pytest.mark.timeout(600)
def test_make_install_and_uninstall(pod_env: PodEnv, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    r = subprocess.run(["make", "install", f"PREFIX={prefix}"], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    nspod = prefix / "bin" / "nspod"
    assert nspod.is_symlink() and nspod.resolve().is_relative_to(prefix / "lib" / "nspod")
    # the installed copy works from anywhere, for a root shell as sudo gives one
    r = subprocess.run([str(nspod), "--version"], cwd="/", capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("nspod ")
    env = dict(pod_env.env, PATH=f"{prefix}/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    r = subprocess.run(["nspod", "create", "--net", "none", "inst"], env=env, cwd="/",
                       capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, "inst\n"), r.stderr
    r = subprocess.run(["nspod", "join", "inst", "--", "hostname"], env=env,
                       capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, "inst\n"), r.stderr
    subprocess.run(["nspod", "rm", "-f", "inst"], env=env, check=True, capture_output=True)
    r = subprocess.run(["make", "uninstall", f"PREFIX={prefix}"], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert not nspod.exists() and not nspod.is_symlink()
    assert not (prefix / "lib" / "nspod").exists()
