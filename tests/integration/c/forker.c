/* Forks children that sleep until fork fails (tests/integration/test_seccomp.py). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Forks children that sleep until fork fails; prints how many it made. */
int main(void)
{
	static pid_t kids[10000];
	int n = 0, err = 0;

	while (n < 10000) {
		pid_t pid = fork();
		if (pid == 0) {
			pause();
			_exit(0);
		}
		if (pid < 0) {
			err = errno;
			break;
		}
		kids[n++] = pid;
	}
	printf("%d %s\n", n, err == EAGAIN ? "EAGAIN" : strerror(err));
	fflush(stdout);
	for (int i = 0; i < n; i++)
		kill(kids[i], SIGKILL);
	while (wait(NULL) > 0)
		;
	return 0;
}
