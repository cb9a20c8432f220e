/* Raw syscalls for tests/integration/test_seccomp.py: prints NAME ok or NAME ERRNO. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* A syscall in a child, which exits at once: what it changes dies with it. */
static long in_child(long nr, long a, long b, long c)
{
	int status, fds[2];
	long rc = 0;
	pid_t pid;

	if (pipe(fds) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		rc = syscall(nr, a, b, c, 0, 0);
		if (rc == 0 && (nr == SYS_clone3 || nr == SYS_clone))
			_exit(0);  /* the clone */
		rc = rc < 0 ? -errno : 0;
		if (write(fds[1], &rc, sizeof(rc)) != sizeof(rc))
			_exit(1);
		_exit(0);
	}
	close(fds[1]);
	if (read(fds[0], &rc, sizeof(rc)) != sizeof(rc))
		rc = 0;
	waitpid(pid, &status, 0);
	if (rc < 0) {
		errno = (int)-rc;
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct { uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack,
		 stack_size, tls; } args3 = { .exit_signal = SIGCHLD };
	int i;

	for (i = 1; i < argc; i++) {
		const char *n = argv[i];
		long rc = -1;

		errno = 0;
		if (!strcmp(n, "keyctl"))  /* KEYCTL_GET_KEYRING_ID of the session keyring */
			rc = syscall(SYS_keyctl, 0, -3, 1);
		else if (!strcmp(n, "add_key"))  /* a user key in the process keyring */
			rc = syscall(SYS_add_key, "user", "nspod-test", "x", 1, -2);
		else if (!strcmp(n, "bpf"))  /* no such command: EINVAL from the kernel */
			rc = syscall(SYS_bpf, 1000, NULL, 0);
		else if (!strcmp(n, "perf_event_open"))  /* no attr: EFAULT from the kernel */
			rc = syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
		else if (!strcmp(n, "unshare_user"))
			rc = in_child(SYS_unshare, CLONE_NEWUSER, 0, 0);
		else if (!strcmp(n, "clone"))  /* a plain fork */
			rc = in_child(SYS_clone, SIGCHLD, 0, 0);
		else if (!strcmp(n, "clone_user"))
			rc = in_child(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0);
		else if (!strcmp(n, "clone3"))
			rc = in_child(SYS_clone3, (long)&args3, sizeof(args3), 0);
		else if (!strcmp(n, "vsock"))
			rc = socket(40, SOCK_STREAM, 0);
		else if (!strcmp(n, "personality"))  /* setarch -R */
			rc = personality(ADDR_NO_RANDOMIZE);
		if (rc < 0)
			printf("%s %d\n", n, errno);
		else
			printf("%s ok\n", n);
	}
	return 0;
}
