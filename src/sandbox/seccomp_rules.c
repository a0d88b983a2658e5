/* seccomp_rules.c — the syscall allowlist, as libseccomp rules.
 *
 * Compiled at build time by seccomp-gen into BPF (libseccomp takes
 * milliseconds to build this filter; loading finished BPF takes
 * microseconds). The runtime side is seccomp.c. The allowlist refuses with
 * EPERM what ordinary programs do not need: kernel attack surface
 * (io_uring, bpf, userfaultfd, perf, keyrings), namespace and mount
 * changes, ptrace, module and clock changes. */
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "seccomp_rules.h"

static const char *const allowed[] = {
	"accept", "accept4", "access", "adjtimex", "alarm", "arch_prctl", "bind", "brk",
	"cachestat", "capget", "capset", "chdir", "chmod", "chown", "clock_adjtime",
	"clock_getres", "clock_gettime", "clock_nanosleep", "close", "close_range",
	"connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
	"epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait",
	"eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat",
	"faccessat2", "fadvise64", "fallocate", "fchdir", "fchmod", "fchmodat",
	"fchmodat2", "fchown", "fchownat", "fcntl", "fdatasync", "fgetxattr",
	"flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstatfs",
	"fsync", "ftruncate", "futex", "futex_requeue", "futex_wait", "futex_waitv",
	"futex_wake", "futimesat", "get_mempolicy", "get_robust_list", "getcpu",
	"getcwd", "getdents", "getdents64", "getegid", "geteuid", "getgid",
	"getgroups", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid",
	"getppid", "getpriority", "getrandom", "getresgid", "getresuid", "getrlimit",
	"getrusage", "getsid", "getsockname", "getsockopt", "gettid", "gettimeofday",
	"getuid", "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1",
	"inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents", "io_pgetevents",
	"io_setup", "io_submit", "ioprio_get", "ioprio_set", "kill", "landlock_add_rule",
	"landlock_create_ruleset", "landlock_restrict_self", "lchown", "lgetxattr",
	"link", "linkat", "listen", "listxattr", "llistxattr", "lremovexattr", "lseek",
	"lsetxattr", "lstat", "madvise", "map_shadow_stack", "mbind", "membarrier",
	"memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat",
	"mlock", "mlock2", "mlockall", "mmap", "mprotect", "mq_getsetattr", "mq_notify",
	"mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink", "mremap", "mseal",
	"msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall",
	"munmap", "nanosleep", "newfstatat", "open", "openat", "openat2", "pause",
	"pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
	"pkey_mprotect", "poll", "ppoll", "prctl", "pread64", "preadv", "preadv2",
	"prlimit64", "process_mrelease", "pselect6", "pwrite64", "pwritev", "pwritev2",
	"read", "readahead", "readlink", "readlinkat", "readv", "recvfrom", "recvmmsg",
	"recvmsg", "remap_file_pages", "removexattr", "rename", "renameat", "renameat2",
	"restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
	"rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
	"rt_sigtimedwait", "rt_tgsigqueueinfo", "sched_get_priority_max",
	"sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
	"sched_getscheduler", "sched_rr_get_interval", "sched_setaffinity",
	"sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
	"seccomp", "select", "semctl", "semget", "semop", "semtimedop", "sendfile",
	"sendmmsg", "sendmsg", "sendto", "set_mempolicy", "set_robust_list",
	"set_tid_address", "setfsgid", "setfsuid", "setgid", "setgroups", "setitimer",
	"setpgid", "setpriority", "setregid", "setresgid", "setresuid", "setreuid",
	"setrlimit", "setsid", "setsockopt", "setuid", "setxattr", "shmat", "shmctl",
	"shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "splice",
	"stat", "statfs", "statx", "symlink", "symlinkat", "sync", "sync_file_range",
	"syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete",
	"timer_getoverrun", "timer_gettime", "timer_settime", "timerfd_create",
	"timerfd_gettime", "timerfd_settime", "times", "tkill", "truncate", "umask",
	"uname", "unlink", "unlinkat", "utime", "utimensat", "utimes", "vfork", "wait4",
	"waitid", "write", "writev", NULL,
};

/* Allow ioctl unless its 32-bit command is one of `deny`. The kernel reads
 * the command as unsigned int, so the comparison masks the upper half
 * (CVE-2019-10063). libseccomp cannot mix an unconditional allow with a
 * conditional refusal, so the allowed set is written as a union of masked
 * matches: every value differing from all denied ones in a bit they share,
 * plus the other values of the remaining bits. */
static int allow_ioctl_except(scmp_filter_ctx ctx, const uint32_t *deny, int ndeny)
{
	uint32_t same = 0xffffffffu, val = deny[0];
	uint32_t diffbits[32];
	int ndiff = 0;

	for (int i = 1; i < ndeny; i++)
		same &= ~(deny[i] ^ deny[0]);
	for (int b = 0; b < 32; b++) {
		uint32_t bit = 1u << b;
		if (same & bit) {
			if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					     SCMP_A1(SCMP_CMP_MASKED_EQ, bit, (~val) & bit)) < 0)
				return -1;
		} else {
			diffbits[ndiff++] = bit;
		}
	}
	if (ndiff > 8)
		return -1;
	for (uint32_t combo = 0; combo < (1u << ndiff); combo++) {
		uint32_t v = val & same;
		bool denied = false;
		for (int k = 0; k < ndiff; k++)
			if (combo & (1u << k))
				v |= diffbits[k];
		for (int i = 0; i < ndeny; i++)
			denied |= v == deny[i];
		if (!denied && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
						SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, v)) < 0)
			return -1;
	}
	return 0;
}

int seccomp_rules_add(scmp_filter_ctx ctx)
{
	static const uint32_t tty_inject[] = { TIOCSTI, TIOCLINUX };
	static const int families[] = { AF_UNIX, AF_INET, AF_INET6 };
	static const unsigned long personas[] = { 0x0, 0x0008, 0x20000, 0x20008, 0xffffffff };
	const uint64_t ns_flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
				  CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP | CLONE_NEWTIME;

	for (int i = 0; allowed[i]; i++) {
		int nr = seccomp_syscall_resolve_name(allowed[i]);
		if (nr == __NR_SCMP_ERROR)
			continue;	/* newer than this libseccomp: stays refused */
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) < 0)
			return -1;
	}
	/* Processes and threads yes, new namespaces no. clone3 passes its flags
	 * in memory seccomp cannot read: ENOSYS makes libc fall back to clone. */
	if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
			     SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags, 0)) < 0 ||
	    seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) < 0)
		return -1;
	/* Only unix and IP sockets: no packet, netlink, alg, vsock, bluetooth…
	 * Full 64-bit equality, so a padded family cannot slip through. */
	for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
				     SCMP_A0(SCMP_CMP_EQ, (uint64_t)families[i])) < 0)
			return -1;
	if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socketpair), 1,
			     SCMP_A0(SCMP_CMP_EQ, (uint64_t)AF_UNIX)) < 0)
		return -1;
	for (size_t i = 0; i < sizeof personas / sizeof personas[0]; i++)
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(personality), 1,
				     SCMP_A0(SCMP_CMP_EQ, personas[i])) < 0)
			return -1;
	return allow_ioctl_except(ctx, tty_inject, 2);
}

