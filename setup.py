"""Builds nspod: the cffi core (nspod._core) and the static pause binary."""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
VERSION = "0.1.0"
# -z norelro: a static binary has no dynamic relocations for RELRO to guard,
# and its page alignment would split the writable data over two pages.
# -fstack-protector-strong: pause and the logger read what members send;
# measured, it costs them no byte of file and no kB of RSS.
# No -Werror here: a newer compiler's new warning must not break a user's
# `make setup`; `make lint` (CI) builds both with it (Makefile C_WARNINGS).
CFLAGS = ["-Os", "-Wall", "-Wextra", "-fstack-protector-strong", "-static", "-s",
          "-Wl,-z,norelro", f'-DNSPOD_VERSION="{VERSION}"']


def build_static(source: str, out: Path) -> None:
    """Compiles csrc/<source> into a static executable at out (pause, the logger).

    musl-gcc gives a binary of a few kB resident; glibc static is the
    fallback (about 700 kB resident) and says so.
    """
    cc = shutil.which("musl-gcc")
    if cc is None:
        cc = os.environ.get("CC", "cc")
        print("nspod: musl-gcc not found; building pause against glibc (larger)")
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([cc, *CFLAGS, "-o", str(out), str(HERE / "csrc" / source)], check=True)


class BuildExt(build_ext):
    def run(self) -> None:
        super().run()
        for source, binary in (("pause.c", "pause"), ("logger.c", "nspod-logger")):
            target = Path(self.build_lib) / "nspod" / binary
            build_static(source, target)
            if self.inplace:
                shutil.copy2(target, HERE / "nspod" / binary)


setup(
    version=VERSION,
    cffi_modules=["csrc/build_core.py:ffibuilder"],
    cmdclass={"build_ext": BuildExt},
)
