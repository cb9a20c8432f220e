/*
 * The syscalls nspod needs that Python 3.11's os module lacks.
 * Each wrapper returns what the syscall returns; errno is left for the
 * caller (nspod.syscalls turns -1 into OSError with the object named).
 */
#define _GNU_SOURCE
#include <errno.h>
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
