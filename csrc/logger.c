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
 *
 * Rotation: with "-s MAX NAME" and the log's directory on fd 5, an entry
 * that would take the file NAME past MAX bytes first renames NAME to
 * NAME.1 (replacing the one before) and starts a new NAME: each file stays
 * within MAX (an entry is at most 16 kB and a header), so the log takes at
 * most twice MAX on disk.  An entry is one writev() to an O_APPEND file: it
 * lands whole in one file, never split by a rotation or mixed with the
 * entries of another logger of the same member (an earlier run draining).
 * The directory's fd is all the rotation needs: renameat() and openat()
 * relative to it work from the logger's empty root, with no capability.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "sysnr.h"

/*
 * seccomp(2)'s ABI, spelled out: musl ships no kernel headers.  The filter
 * itself (logger_filter[]) is compiled by libseccomp at build time
 * (csrc/filters.c writes logger_filter.h).
 */
struct filter_insn {
	unsigned short code;
	unsigned char jt, jf;
	unsigned int k;
};
#ifdef NSPOD_LOGGER_FILTER
#include "logger_filter.h"
#endif
#define SECCOMP_SET_MODE_FILTER 1

#define LINE_MAX_BYTES 16384
#define DIR_FD 5

static unsigned long long max_size;	/* 0: no rotation */
static const char *log_name;
static char rotated_name[4096];

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

/*
 * Writes the iovecs to fd whole: one writev() (atomic for an O_APPEND
 * file), then, after a short write (a full disk), what is left.
 */
static int write_iov(int fd, struct iovec *iov, int cnt)
{
	while (cnt > 0) {
		ssize_t n = writev(fd, iov, cnt);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/* Makes stdout the file at log_name again (best effort: on failure it stays put). */
static void reopen_log(void)
{
	int fd = openat(DIR_FD, log_name, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC,
			0640);

	if (fd < 0)
		return;
	dup2(fd, STDOUT_FILENO);
	close(fd);
}

/* Makes fd 1 the file NAME again, if another logger of the member rotated it. */
static void follow_rename(void)
{
	struct stat mine, named;

	if (fstat(STDOUT_FILENO, &mine) < 0)
		return;
	if (fstatat(DIR_FD, log_name, &named, AT_SYMLINK_NOFOLLOW) == 0 &&
	    named.st_ino == mine.st_ino && named.st_dev == mine.st_dev)
		return;
	reopen_log();
}

/*
 * Before an entry of len bytes: rotates when it would take the file past
 * max_size.  Best effort: a rotation that fails leaves the entry appended.
 */
static void make_room(size_t len)
{
	struct stat st;

	if (!max_size || fstat(STDOUT_FILENO, &st) < 0 ||
	    (unsigned long long)st.st_size + len <= max_size)
		return;
	follow_rename();
	if (fstat(STDOUT_FILENO, &st) < 0 || st.st_size == 0 ||
	    (unsigned long long)st.st_size + len <= max_size)
		return;
	if (renameat(DIR_FD, log_name, DIR_FD, rotated_name) < 0)
		return;
	reopen_log();
}

/* Emits one log entry: timestamp, stream, tag and the bytes of a line. */
static void emit(const struct stream *s, const char *line, size_t len, char tag)
{
	char head[96];
	struct iovec iov[3];
	struct timespec now;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	n = strftime(head, sizeof(head), "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(head + n, sizeof(head) - n, ".%09ldZ %s %c ",
			      now.tv_nsec, s->name, tag);
	iov[0].iov_base = head;
	iov[0].iov_len = n;
	iov[1].iov_base = (void *)line;
	iov[1].iov_len = len;
	iov[2].iov_base = "\n";
	iov[2].iov_len = 1;
	make_room(n + len + 1);
	write_iov(STDOUT_FILENO, iov, 3);
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
 * file, all already open (and, to rotate, renames and creates that file in
 * its directory, open on fd 5).  Fatal on failure: a logger members could reach
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

/*
 * Confines the logger to the syscalls of its loop (see csrc/filters.c for
 * the list): anything else fails with EPERM.  After drop_rights(), whose
 * no_new_privs lets it install a filter.  Best effort, as pause's: a
 * kernel without seccomp leaves the logger logging.
 */
static void confine(void)
{
#ifdef NSPOD_LOGGER_FILTER
	struct { unsigned short len; const struct filter_insn *filter; } prog = {
		sizeof(logger_filter) / sizeof(logger_filter[0]), logger_filter
	};

	syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
#endif
}

int main(int argc, char **argv)
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
	confine();
	if (argc == 4 && strcmp(argv[1], "-s") == 0 && !strchr(argv[3], '/') &&
	    strlen(argv[3]) + 3 < sizeof(rotated_name)) {
		max_size = strtoull(argv[2], NULL, 10);
		log_name = argv[3];
		strcpy(rotated_name, log_name);
		strcat(rotated_name, ".1");
	}
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
