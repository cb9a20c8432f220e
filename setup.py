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


def build_static(source: str, out: Path, extra: tuple[str, ...] = ()) -> None:
    """Compiles csrc/<source> into a static executable at out (pause, the logger).

    musl-gcc gives a binary of a few kB resident; glibc static is the
    fallback (about 700 kB resident) and says so.
    """
    cc = shutil.which("musl-gcc")
    if cc is None:
        cc = os.environ.get("CC", "cc")
        print("nspod: musl-gcc not found; building pause against glibc (larger)")
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([cc, *CFLAGS, *extra, "-o", str(out), str(HERE / "csrc" / source)],
                   check=True)


def filters(tmp: Path) -> dict[str, tuple[str, ...]]:
    """Builds and runs csrc/filters.c (libseccomp): the seccomp filters of pause and
    the logger as tmp/pause_filter.h and tmp/logger_filter.h.

    Returns, for each binary, the flags that compile its filter into it.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    gen = tmp / "filters"
    subprocess.run([os.environ.get("CC", "cc"), "-O2", "-Wall", "-Wextra", "-o",
                    str(gen), str(HERE / "csrc" / "filters.c"), "-lseccomp"], check=True)
    flags = {}
    for who in ("pause", "logger"):
        header = subprocess.run([str(gen), who], check=True, capture_output=True).stdout
        (tmp / f"{who}_filter.h").write_bytes(header)
        flags[who] = (f"-DNSPOD_{who.upper()}_FILTER", f"-I{tmp}")
    return flags


class BuildExt(build_ext):
    def run(self) -> None:
        super().run()
        flags = filters(Path(self.build_temp))
        for source, binary, who in (("pause.c", "pause", "pause"),
                                    ("logger.c", "nspod-logger", "logger")):
            target = Path(self.build_lib) / "nspod" / binary
            build_static(source, target, flags[who])
            if self.inplace:
                shutil.copy2(target, HERE / "nspod" / binary)


setup(
    version=VERSION,
    cffi_modules=["csrc/build_core.py:ffibuilder", "csrc/build_seccomp.py:ffibuilder"],
    cmdclass={"build_ext": BuildExt},
)
