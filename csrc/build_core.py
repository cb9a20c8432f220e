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
    int nspod_open_tree(int dirfd, const char *path, unsigned int flags);
    int nspod_move_mount(int from_dirfd, const char *from_path, int to_dirfd,
                         const char *to_path, unsigned int flags);
    int nspod_mount_setattr(int dirfd, const char *path, unsigned int flags,
                            unsigned long long attr_set, unsigned long long attr_clr);
    int nspod_fsopen(const char *fstype, unsigned int flags);
    int nspod_fsconfig(int fd, unsigned int cmd, const char *key, const char *value, int aux);
    int nspod_fsmount(int fd, unsigned int flags, unsigned int attrs);
    int nspod_openat2(int dirfd, const char *path, unsigned long long flags,
                      unsigned long long mode, unsigned long long resolve);
    int nspod_close_range(unsigned int first, unsigned int last, unsigned int flags);
    long nspod_fs_type(int fd);
    long nspod_new_session_keyring(void);
    int nspod_set_dumpable(int on);
    int nspod_last_cap(void);
    int nspod_seccomp_load(const void *prog, size_t len, unsigned int flags);
    """
)
ffibuilder.set_source("nspod._core", (HERE / "core.c").read_text(), include_dirs=[str(HERE)])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
