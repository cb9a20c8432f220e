/*
 * nspod's C parts share this: syscall numbers older libcs lack.
 */
#ifndef NSPOD_SYSNR_H
#define NSPOD_SYSNR_H
#include <sys/syscall.h>

/*
 * The new mount API and friends (Linux 5.2-5.12; Debian 12 runs 6.1). glibc
 * 2.36 has wrappers for some, older ones none, so they go through syscall(2)
 * with the generic numbers, which are the same on every architecture nspod
 * builds for (x86_64, aarch64).
 */
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

#endif
