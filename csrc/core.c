/*
 * The syscalls nspod needs that Python 3.11's os module lacks.
 * Each wrapper returns what the syscall returns; errno is left for the
 * caller (nspod.syscalls turns -1 into OSError with the object named).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/statfs.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sysnr.h"

static int nspod_unshare(int flags)
{
	return unshare(flags);
}

static int nspod_setns(int fd, int nstype)
{
	return setns(fd, nstype);
}

static int nspod_mount(const char *source, const char *target,
		       const char *fstype, unsigned long flags, const char *data)
{
	return mount(source, target, fstype, flags, data);
}

static int nspod_umount2(const char *target, int flags)
{
	return umount2(target, flags);
}

static int nspod_pivot_root(const char *new_root, const char *put_old)
{
	return (int)syscall(SYS_pivot_root, new_root, put_old);
}

static int nspod_sethostname(const char *name, size_t len)
{
	return sethostname(name, len);
}

/* Sets IFF_UP on the interface named name in the caller's netns. */
static int nspod_link_up(const char *name)
{
	struct ifreq ifr;
	int fd, rc = -1, saved;

	if (strlen(name) >= IFNAMSIZ) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, name);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}


struct nspod_mount_attr {
	unsigned long long attr_set, attr_clr, propagation, userns_fd;
};

struct nspod_open_how {
	unsigned long long flags, mode, resolve;
};

static int nspod_open_tree(int dirfd, const char *path, unsigned int flags)
{
	return (int)syscall(SYS_open_tree, dirfd, path, flags);
}

static int nspod_move_mount(int from_dirfd, const char *from_path, int to_dirfd,
			    const char *to_path, unsigned int flags)
{
	return (int)syscall(SYS_move_mount, from_dirfd, from_path, to_dirfd, to_path, flags);
}

static int nspod_mount_setattr(int dirfd, const char *path, unsigned int flags,
			       unsigned long long attr_set, unsigned long long attr_clr)
{
	struct nspod_mount_attr attr = { attr_set, attr_clr, 0, 0 };

	return (int)syscall(SYS_mount_setattr, dirfd, path, flags, &attr, sizeof(attr));
}

static int nspod_fsopen(const char *fstype, unsigned int flags)
{
	return (int)syscall(SYS_fsopen, fstype, flags);
}

static int nspod_fsconfig(int fd, unsigned int cmd, const char *key, const char *value, int aux)
{
	return (int)syscall(SYS_fsconfig, fd, cmd, key, value, aux);
}

static int nspod_fsmount(int fd, unsigned int flags, unsigned int attrs)
{
	return (int)syscall(SYS_fsmount, fd, flags, attrs);
}

static int nspod_openat2(int dirfd, const char *path, unsigned long long flags,
			 unsigned long long mode, unsigned long long resolve)
{
	struct nspod_open_how how = { flags, mode, resolve };

	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

static int nspod_close_range(unsigned int first, unsigned int last, unsigned int flags)
{
	return (int)syscall(SYS_close_range, first, last, flags);
}

/* The filesystem magic of what fd is on (statfs(2) f_type), or -1. */
static long nspod_fs_type(int fd)
{
	struct statfs st;

	if (fstatfs(fd, &st) < 0)
		return -1;
	return (long)st.f_type;
}

/* A new anonymous session keyring for the caller (keyctl(2) JOIN_SESSION_KEYRING). */
static long nspod_new_session_keyring(void)
{
	return syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, (char *)0);
}

static int nspod_set_dumpable(int on)
{
	return prctl(PR_SET_DUMPABLE, on, 0, 0, 0);
}

/*
 * The highest capability this kernel knows, probed with PR_CAPBSET_READ
 * (EINVAL past the last one): unlike /proc/sys/kernel/cap_last_cap, no
 * file a rootfs could forge.
 */
static int nspod_last_cap(void)
{
	int cap = 0;

	while (cap < 255 && prctl(PR_CAPBSET_READ, cap + 1, 0, 0, 0) >= 0)
		cap++;
	return cap;
}

/*
 * Installs a seccomp filter: prog is len bytes of struct sock_filter, as
 * libseccomp's seccomp_export_bpf() writes them (nspod.seccomp compiles
 * them once per pod).  The caller has set no_new_privs or holds
 * CAP_SYS_ADMIN, as seccomp(2) requires.
 */
static int nspod_seccomp_load(const void *prog, size_t len, unsigned int flags)
{
	struct sock_fprog fprog;

	if (len == 0 || len % sizeof(struct sock_filter) != 0 ||
	    len / sizeof(struct sock_filter) > BPF_MAXINSNS) {
		errno = EINVAL;
		return -1;
	}
	fprog.len = (unsigned short)(len / sizeof(struct sock_filter));
	fprog.filter = (struct sock_filter *)prog;
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
}
