/* kvmtrial.c — does KVM run a guest on this host? `aegis doctor` asks.
 *
 * /dev/kvm answering KVM_GET_API_VERSION is not enough: on some nested
 * hosts QEMU aborts as it sets up the first vCPU ("failed to set MSR
 * 0x10a"). So the trial starts QEMU the way a run does (the microvm
 * machine, KVM, the same CPU model: VM_QEMU_MACHINE, VM_QEMU_CPU) with the
 * guest kernel and an early serial console, and waits a bounded time for
 * the kernel's first line: that line is guest code run under KVM. QEMU
 * ending first is the reason KVM is unusable. It never takes longer than
 * the bound, and QEMU is killed either way. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/util.h"
#include "vm.h"

/* The kernel's first line on its early console. */
#define KERNEL_BANNER "Linux version"

/* In the child: its own process group, stdout (the guest's serial
 * console) and stderr (QEMU's complaints) to the pipes, nothing else. */
static void __attribute__((noreturn)) trial_exec(const char *qemu, const struct vm_guest *g, int out, int err,
						 pid_t parent)
{
	char *argv[] = { (char *)qemu, "-M", VM_QEMU_MACHINE, "-accel", "kvm", "-cpu", VM_QEMU_CPU(true),
			 "-m", "128M", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
			 "-no-reboot", "-sandbox", VM_QEMU_SANDBOX, "-serial", "stdio",
			 "-kernel", (char *)g->vmlinux,
			 "-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1 rdinit=/nonexistent", NULL };
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

	setpgid(0, 0);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(126);
	if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 ||
	    syscall(SYS_close_range, 3, ~0U, 0) < 0)
		_exit(126);
	execv(qemu, argv);
	dprintf(2, "error: exec %s: %s\n", qemu, strerror(errno));
	_exit(127);
}

/* QEMU's reason, from what it wrote on stderr: its "error: ..." line,
 * else its first line, without the program's name. */
static void trial_reason(const char *text, int status, char *why, size_t cap)
{
	const char *line = strstr(text, "error: ");
	const char *how = WIFSIGNALED(status) ? "QEMU was killed by signal" : "QEMU exited with status";
	int code = WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status);

	if (line)
		line += strlen("error: ");
	else if ((line = strstr(text, ": ")) && line < text + strcspn(text, "\n"))
		line += 2;
	else
		line = text;
	if (*line)
		snprintf(why, cap, "%.*s (%s %d)", (int)strcspn(line, "\n"), line, how, code);
	else
		snprintf(why, cap, "%s %d before the guest said anything", how, code);
}

/* Append what fd has to buf (NUL-terminated, cap bytes); -1 with fd
 * closed at its end. The console keeps its first bytes only: the banner
 * is near the start. */
static int drain(int *fd, char *buf, size_t *len, size_t cap)
{
	ssize_t n;

	if (*len + 1 >= cap) {
		char sink[4096];
		n = read(*fd, sink, sizeof sink);
	} else if ((n = read(*fd, buf + *len, cap - 1 - *len)) > 0) {
		*len += (size_t)n;
		buf[*len] = '\0';
	}
	if (n < 0 && errno == EINTR)
		return 0;
	if (n <= 0) {
		close(*fd);
		*fd = -1;
		return -1;
	}
	return 0;
}

int vm_kvm_trial(const struct vm_guest *g, unsigned bound_ms, char *why, size_t cap)
{
	const char *qemu = vm_qemu_path();
	char console[8192] = "", complaints[2048] = "";
	size_t clen = 0, elen = 0;
	int out[2], err[2], status = 0, verdict = -1;
	uint64_t start = now_us(), deadline = start + (uint64_t)bound_ms * 1000;
	pid_t pid, parent = getpid();

	if (!qemu)
		return snprintf(why, cap, "QEMU is not installed"), -1;
	if (pipe2(out, O_CLOEXEC) < 0)
		return snprintf(why, cap, "pipe: %s", strerror(errno)), -1;
	if (pipe2(err, O_CLOEXEC) < 0) {
		close(out[0]), close(out[1]);
		return snprintf(why, cap, "pipe: %s", strerror(errno)), -1;
	}
	pid = fork();
	if (pid == 0)
		trial_exec(qemu, g, out[1], err[1], parent);
	close(out[1]), close(err[1]);
	if (pid < 0) {
		close(out[0]), close(err[0]);
		return snprintf(why, cap, "fork: %s", strerror(errno)), -1;
	}
	setpgid(pid, pid);	/* both sides: the kill below reaches all of it */
	while (out[0] >= 0 || err[0] >= 0) {	/* both closed: QEMU is gone */
		struct pollfd p[2] = { { out[0], POLLIN, 0 }, { err[0], POLLIN, 0 } };
		uint64_t now = now_us();

		if (strstr(console, KERNEL_BANNER)) {
			snprintf(why, cap, "a trial guest's kernel ran under KVM within %llu ms",
				 (unsigned long long)((now - start) / 1000));
			verdict = 1;
			break;
		}
		if (now >= deadline) {
			snprintf(why, cap, "a trial guest said nothing within %u ms under KVM", bound_ms);
			verdict = 0;
			break;
		}
		if (poll(p, 2, (int)((deadline - now) / 1000) + 1) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			drain(&out[0], console, &clen, sizeof console);
		if (p[1].revents)
			drain(&err[0], complaints, &elen, sizeof complaints);
	}
	kill(-pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (verdict < 0 && strstr(console, KERNEL_BANNER)) {	/* said, then ended */
		snprintf(why, cap, "a trial guest's kernel ran under KVM");
		verdict = 1;
	}
	if (verdict < 0) {	/* QEMU ended before the guest said anything: its last words */
		while (err[0] >= 0)
			drain(&err[0], complaints, &elen, sizeof complaints);
		trial_reason(complaints, status, why, cap);
		verdict = 0;
	}
	if (out[0] >= 0)
		close(out[0]);
	if (err[0] >= 0)
		close(err[0]);
	return verdict;
}
