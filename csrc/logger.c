/*
 * nspod-logger: the log writer of one detached member.
 *
 * Reads the member's stdout (fd 0) and stderr (fd 3) until both are closed
 * and appends each line to the log file on fd 1 in the CRI log format
 * Kubernetes uses:
 *
 *     2026-11-23T20:50:01.123456789Z stdout F hello
 *
 * "F" marks a full line, "P" a partial one (a line longer than the buffer,
 * or the last bytes before EOF without a newline).  It runs inside the pod
 * as a child of pause, so it costs a few kB, not a Python interpreter.
 *
 * Members can see it (it is in their PID namespace), so once its files are
 * open it keeps nothing worth reaching (drop_rights): not dumpable, no
 * capability in any set, no_new_privs, and its root and cwd an empty
 * read-only tmpfs attached nowhere, so /proc/PID/{root,cwd,mountinfo} of
 * the logger show nothing of the host, even to a member with SYS_PTRACE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 16384

#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
/* MOUNT_ATTR_RDONLY | NOSUID | NODEV | NOEXEC */
#define LOCKED_DOWN 0xf

struct stream {
	int fd;
	const char *name;
	char buf[LINE_MAX_BYTES];
	size_t len;
};

/* Writes all of buf to fd, retrying on EINTR and short writes. */
static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Emits one log entry: timestamp, stream, tag and the bytes of a line. */
static void emit(const struct stream *s, const char *line, size_t len, char tag)
{
	char head[96];
	struct timespec now;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	n = strftime(head, sizeof(head), "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(head + n, sizeof(head) - n, ".%09ldZ %s %c ",
			      now.tv_nsec, s->name, tag);
	write_all(STDOUT_FILENO, head, n);
	write_all(STDOUT_FILENO, line, len);
	write_all(STDOUT_FILENO, "\n", 1);
}

/* Emits every complete line in the buffer; keeps the rest. */
static void flush_lines(struct stream *s)
{
	size_t start = 0, i;

	for (i = 0; i < s->len; i++) {
		if (s->buf[i] == '\n') {
			emit(s, s->buf + start, i - start, 'F');
			start = i + 1;
		}
	}
	if (start == 0 && s->len == sizeof(s->buf)) {
		emit(s, s->buf, s->len, 'P');
		s->len = 0;
		return;
	}
	memmove(s->buf, s->buf + start, s->len - start);
	s->len -= start;
}

/* Reads what is available on s; returns 0 at EOF (s->fd closed), 1 otherwise. */
static int pump(struct stream *s)
{
	ssize_t n = read(s->fd, s->buf + s->len, sizeof(s->buf) - s->len);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 1;
	if (n <= 0) {
		if (s->len > 0)
			emit(s, s->buf, s->len, 'P');
		s->len = 0;
		close(s->fd);
		s->fd = -1;
		return 0;
	}
	s->len += (size_t)n;
	flush_lines(s);
	return 1;
}

/*
 * An empty read-only tmpfs, never attached to any mount namespace
 * (fsmount(2)), becomes the root and cwd: neither leads anywhere.
 */
static int empty_root(void)
{
	int fs, mnt;

	fs = (int)syscall(SYS_fsopen, "tmpfs", 1);
	if (fs < 0)
		return -1;
	if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "size", "4k", 0) < 0 ||
	    syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "nr_inodes", "1", 0) < 0 ||
	    syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "mode", "0555", 0) < 0 ||
	    syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		return -1;
	mnt = (int)syscall(SYS_fsmount, fs, 1, LOCKED_DOWN);
	close(fs);
	if (mnt < 0 || fchdir(mnt) < 0 || chroot(".") < 0 || chdir("/") < 0)
		return -1;
	close(mnt);
	return 0;
}

/*
 * Gives up every right: the logger only reads two pipes and writes one
 * file, all already open.  Fatal on failure: a logger members could reach
 * must not run at all.
 */
static void drop_rights(void)
{
	struct { unsigned int version; int pid; } hdr = { 0x20080522, 0 };
	struct { unsigned int effective, permitted, inheritable; } data[2];
	int cap;

	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 || empty_root() < 0)
		exit(125);
	for (cap = 0; cap < 64; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno == EINVAL)
			break;
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data) < 0 ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		exit(125);
}

int main(void)
{
	static struct stream out = { .fd = 0, .name = "stdout" };
	static struct stream err = { .fd = 3, .name = "stderr" };
	struct pollfd pfd[2];

	/* The member's signals are not ours: stop only at EOF. */
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	drop_rights();
	while (out.fd >= 0 || err.fd >= 0) {
		pfd[0].fd = out.fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = err.fd;
		pfd[1].events = POLLIN;
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		if (out.fd >= 0 && pfd[0].revents)
			pump(&out);
		if (err.fd >= 0 && pfd[1].revents)
			pump(&err);
	}
	return 0;
}
