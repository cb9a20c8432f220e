/*
 * pause: PID 1 of an nspod pod.
 *
 * Sleeps for the life of the pod and reaps every child that
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
#include <stdarg.h>
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

/*
 * seccomp(2)'s ABI, spelled out: musl ships no kernel headers.  The filter
 * itself (pause_filter[]) is compiled by libseccomp at build time
 * (csrc/filters.c writes pause_filter.h).
 */
struct filter_insn {
	unsigned short code;
	unsigned char jt, jf;
	unsigned int k;
};
#ifdef NSPOD_PAUSE_FILTER
#include "pause_filter.h"
#endif
#define SECCOMP_SET_MODE_FILTER 1

/*
 * Never runs: the signals pause waits for stay blocked and are taken with
 * sigwaitinfo(). A handler is installed all the same, because the kernel
 * drops signals with the default action that are sent to a PID namespace's
 * init, and a blocked signal must not depend on that rule.
 */
static void on_signal(int sig)
{
	(void)sig;
}

/*
 * Writes the strings of a NULL-terminated list to stderr. pause uses no
 * stdio: vfprintf alone would double the pages it keeps resident.
 */
static void say(const char *first, ...)
{
	va_list ap;
	const char *s;

	va_start(ap, first);
	for (s = first; s; s = va_arg(ap, const char *))
		if (write(STDERR_FILENO, s, strlen(s)) < 0)
			break;
	va_end(ap);
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
	/* the syscall, not the vDSO: touching the vDSO page adds 4 kB of RSS */
	syscall(SYS_clock_gettime, CLOCK_REALTIME, &now);
	line[0] = '\0';
	strcat(line, format_uint(num + sizeof(num), (unsigned int)status));
	strcat(line, " ");
	strcat(line, format_uint(num + sizeof(num),
				 (unsigned long long)now.tv_sec * 1000ULL +
				 (unsigned long long)now.tv_nsec / 1000000ULL));
	strcat(line, "\n");
	len = strlen(line);
	if (write(fd, line, len) != (ssize_t)len)
		say("pause: short exit record\n", NULL);
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
		say("pause: capset failed: ", strerror(errno), "\n", NULL);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/*
 * Confines pause to the syscalls of its main loop (see csrc/filters.c
 * for the list): anything else fails with EPERM.  After drop_rights(),
 * whose no_new_privs lets an unprivileged process install a filter.  Best
 * effort too: a kernel without seccomp leaves pause running, and says so.
 */
static void confine(void)
{
#ifdef NSPOD_PAUSE_FILTER
	struct { unsigned short len; const struct filter_insn *filter; } prog = {
		sizeof(pause_filter) / sizeof(pause_filter[0]), pause_filter
	};

	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
		say("pause: seccomp failed: ", strerror(errno), "\n", NULL);
#endif
}

/* Installs on_signal for sig; fatal on failure (setup time only). */
static void install(int sig)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = sig == SIGCHLD ? SA_NOCLDSTOP : 0;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) < 0) {
		say("pause: sigaction failed: ", strerror(errno), "\n", NULL);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	sigset_t wanted;
	int dirfd, sig;

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		if (write(STDOUT_FILENO, "pause (nspod) " NSPOD_VERSION "\n",
			  sizeof("pause (nspod) " NSPOD_VERSION "\n") - 1) < 0)
			return 1;
		return 0;
	}
	if (getpid() != 1)
		say("pause: warning: not running as PID 1\n", NULL);

	dirfd = record_dir();
	drop_rights();

	/*
	 * The seed's pause sleeps in pause() and reaps in its SIGCHLD handler.
	 * Here the signals stay blocked and sigwaitinfo() takes them one by one:
	 * no wake-up is lost between a check and the sleep, and no signal frame
	 * is ever pushed, which keeps the stack to its first page.
	 */
	sigemptyset(&wanted);
	sigaddset(&wanted, SIGCHLD);
	sigaddset(&wanted, SIGINT);
	sigaddset(&wanted, SIGTERM);
	sigprocmask(SIG_BLOCK, &wanted, NULL);
	install(SIGCHLD);
	install(SIGINT);
	install(SIGTERM);
	confine();
	reap_children(dirfd);
	for (;;) {
		sig = sigwaitinfo(&wanted, NULL);
		if (sig == SIGCHLD)
			reap_children(dirfd);
		else if (sig == SIGINT || sig == SIGTERM) {
			/* SIGTERM (15) comes before a pending SIGCHLD (17): reap
			 * and record what already exited before leaving. */
			reap_children(dirfd);
			return 0;
		}
	}
}
