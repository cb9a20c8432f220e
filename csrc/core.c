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
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

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
