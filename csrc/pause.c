/*
 * pause: PID 1 of an nspod pod.
 *
 * Sleeps in pause() for the life of the pod and reaps every child that
 * exits: the members nspod starts (their starter exits at once, so they
 * are re-parented here) and every orphan of the pod.  SIGINT or SIGTERM
 * ends it with status 0; the kernel then kills what is left of the pod.
 *
 * Exit records: when fd 3 is an open directory, pause writes the wait
 * status of a reaped pid N into the file "N" of that directory, if nspod
 * made one (nspod makes one for each member it starts).  Orphans have no
 * file and leave no trace.  A line is "<wait status> <unix time ms>\n".
 *
 * Built -Os -static with musl: the whole process is a few pages.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef NSPOD_VERSION
#define NSPOD_VERSION "0.0.0"
#endif

#define RECORD_FD 3

static volatile sig_atomic_t child_exited;
static volatile sig_atomic_t stop_signal;

/* Signal handlers only set flags: the work happens in the main loop. */
static void on_sigchld(int sig)
{
	(void)sig;
	child_exited = 1;
}

static void on_stop(int sig)
{
	stop_signal = sig;
}

/* Formats an unsigned number into buf from the right; returns its start. */
static char *format_uint(char *end, unsigned long long v)
{
	*--end = '\0';
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

/*
 * Writes the wait status of pid into its record file, if nspod made one.
 * Never fails the caller: a record that cannot be written is skipped.
 */
static void record_exit(int dirfd, pid_t pid, int status)
{
	char name[24], line[64], num[24];
	struct timespec now;
	size_t len;
	int fd;

	if (dirfd < 0)
		return;
	fd = openat(dirfd, format_uint(name + sizeof(name), (unsigned long long)pid),
		    O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	line[0] = '\0';
	strcat(line, format_uint(num + sizeof(num), (unsigned int)status));
	strcat(line, " ");
	strcat(line, format_uint(num + sizeof(num),
				 (unsigned long long)now.tv_sec * 1000ULL +
				 (unsigned long long)now.tv_nsec / 1000000ULL));
	strcat(line, "\n");
	len = strlen(line);
	if (write(fd, line, len) != (ssize_t)len)
		(void)write(STDERR_FILENO, "pause: short exit record\n", 25);
	close(fd);
}

/* Reaps every exited child without blocking; records each exit. */
static void reap_children(int dirfd)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		record_exit(dirfd, pid, status);
}

/* Returns fd 3 when it is an open directory, else -1. */
static int record_dir(void)
{
	struct stat st;

	if (fstat(RECORD_FD, &st) == 0 && S_ISDIR(st.st_mode))
		return RECORD_FD;
	return -1;
}

/*
 * Gives up every right pause does not need: it only sleeps, reaps and
 * writes records into a directory its own uid owns.  No capabilities (all
 * sets, bounding included), no new privileges, not dumpable, so neither
 * pause nor its /proc entries are a way out of the pod.  Best effort: a
 * kernel that refuses one step leaves pause working, as before.
 */
static void drop_rights(void)
{
	struct { unsigned int version; int pid; } hdr = { 0x20080522, 0 };
	struct { unsigned int effective, permitted, inheritable; } data[2];
	int cap;

	for (cap = 0; cap < 64; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno == EINVAL)
			break;
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data) < 0)
		fprintf(stderr, "pause: capset failed: %s\n", strerror(errno));
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* Installs handler for sig; fatal on failure (setup time only). */
static void install(int sig, void (*handler)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = SA_RESTART | (sig == SIGCHLD ? SA_NOCLDSTOP : 0);
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) < 0) {
		fprintf(stderr, "pause: sigaction failed: %s\n", strerror(errno));
		exit(1);
	}
}

int main(int argc, char **argv)
{
	sigset_t block, old;
	int dirfd;

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		printf("pause (nspod) %s\n", NSPOD_VERSION);
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "pause: warning: not running as PID 1\n");

	dirfd = record_dir();
	drop_rights();
	install(SIGCHLD, on_sigchld);
	install(SIGINT, on_stop);
	install(SIGTERM, on_stop);

	/*
	 * Block the signals we wait for, then sleep in sigsuspend() with them
	 * open: no wake-up is lost between checking the flags and sleeping,
	 * which a bare pause() cannot promise.
	 */
	sigemptyset(&block);
	sigaddset(&block, SIGCHLD);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &old);
	reap_children(dirfd);
	for (;;) {
		if (stop_signal)
			return 0;
		if (child_exited) {
			child_exited = 0;
			reap_children(dirfd);
			continue;
		}
		sigsuspend(&old);
	}
}
