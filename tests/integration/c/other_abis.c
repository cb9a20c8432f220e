/*
 * System calls of the other x86 ABIs, from a 64-bit process: i386's through
 * `int $0x80` (unshare is 310 there, keyctl 288) and x32's (the x86-64
 * number with bit 30 set). A filter that checked only x86-64 numbers would
 * let them through. Prints "NAME ok" or "NAME ERRNO" for each.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <errno.h>

static long i386_call(long nr, long a, long b)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b) : "memory");
	return ret;
}

static void report(const char *name, long ret)
{
	if (ret >= 0)
		printf("%s ok\n", name);
	else
		printf("%s %ld\n", name, -ret);
}

int main(void)
{
	long r;

	report("i386_keyctl", i386_call(288, 0 /* KEYCTL_GET_KEYRING_ID */, -3));
	report("i386_unshare_user", i386_call(310, CLONE_NEWUSER, 0));
	r = syscall(0x40000000 | SYS_unshare, CLONE_NEWUSER);
	report("x32_unshare_user", r < 0 ? -errno : r);
	return 0;
}
