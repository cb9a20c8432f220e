"""cffi builder for nspod._core: the syscalls Python 3.11 lacks (csrc/core.c)."""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef(
    """
    int nspod_unshare(int flags);
    int nspod_setns(int fd, int nstype);
    int nspod_mount(const char *source, const char *target, const char *fstype,
                    unsigned long flags, const char *data);
    int nspod_umount2(const char *target, int flags);
    int nspod_pivot_root(const char *new_root, const char *put_old);
    int nspod_sethostname(const char *name, size_t len);
    int nspod_link_up(const char *name);
    int nspod_seccomp_load(const void *prog, size_t len, unsigned int flags);
    """
)
ffibuilder.set_source("nspod._core", (HERE / "core.c").read_text())

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
