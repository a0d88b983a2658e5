/*
 * aegis-probe: one hostile operation per invocation, for the hostile
 * integration tests (tests/integration/test_hostile.py).  The attack classes
 * and their IDs (E-xx, N-xx, R-xx) are those of HOSTILE.md.
 *
 *   aegis-probe NAME [ARGS...]
 *
 * Each probe performs a real, harmless operation and prints exactly one line:
 *   "NAME: ok"                                         exit 0 (operation succeeded)
 *   "NAME: blocked errno=EPERM (Operation not permitted)"  exit 1 (operation failed)
 * A few probes print extra detail lines after that first line (list-fds,
 * status) or a summary line (fork-bomb).  Exit 2 means bad usage.  A probe that
 * is killed by a signal (e.g. SIGSYS from seccomp) simply dies; the caller sees
 * the signal.
 *
 * The same binary is run inside the sandbox and natively on the host (the
 * "native baseline"): a test only counts an attack as blocked when the probe
 * fails inside AND succeeds outside.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <linux/bpf.h>
#include <linux/if_alg.h>
#include <linux/if_ether.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <linux/vm_sockets.h>

#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif

/* ------------------------------------------------------------------------ */
/* Reporting                                                                */
/* ------------------------------------------------------------------------ */

static const char *probe_name = "aegis-probe";

struct errno_name {
    int num;
    const char *name;
};

static const struct errno_name errno_names[] = {
    {EPERM, "EPERM"},
    {EACCES, "EACCES"},
    {ENOSYS, "ENOSYS"},
    {EROFS, "EROFS"},
    {ENOENT, "ENOENT"},
    {EINVAL, "EINVAL"},
    {EBADF, "EBADF"},
    {EFAULT, "EFAULT"},
    {EAFNOSUPPORT, "EAFNOSUPPORT"},
    {EPROTONOSUPPORT, "EPROTONOSUPPORT"},
    {ENETUNREACH, "ENETUNREACH"},
    {ECONNREFUSED, "ECONNREFUSED"},
    {ETXTBSY, "ETXTBSY"},
    {EIO, "EIO"},
    {ENOTTY, "ENOTTY"},
    {ENXIO, "ENXIO"},
    {EOPNOTSUPP, "EOPNOTSUPP"},
    {ESRCH, "ESRCH"},
    {EAGAIN, "EAGAIN"},
    {ETIMEDOUT, "ETIMEDOUT"},
    {EHOSTUNREACH, "EHOSTUNREACH"},
    {EADDRNOTAVAIL, "EADDRNOTAVAIL"},
    {EEXIST, "EEXIST"},
    {EBUSY, "EBUSY"},
    {ENOMEM, "ENOMEM"},
    {ENODEV, "ENODEV"},
    {ESOCKTNOSUPPORT, "ESOCKTNOSUPPORT"},
    {EPROTOTYPE, "EPROTOTYPE"},
    {ENOTDIR, "ENOTDIR"},
    {EISDIR, "EISDIR"},
    {EMFILE, "EMFILE"},
    {ENOSPC, "ENOSPC"},
    {ENOEXEC, "ENOEXEC"},
    {ENOKEY, "ENOKEY"},
    {EDQUOT, "EDQUOT"},
    {EXDEV, "EXDEV"},
};

static const char *errno_name(int e, char *buf, size_t len)
{
    for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
        if (errno_names[i].num == e)
            return errno_names[i].name;
    snprintf(buf, len, "%d", e);
    return buf;
}

static int report_ok(void)
{
    printf("%s: ok\n", probe_name);
    fflush(stdout);
    return 0;
}

static int report_blocked(int e)
{
    char buf[32];
    printf("%s: blocked errno=%s (%s)\n", probe_name, errno_name(e, buf, sizeof(buf)),
           strerror(e));
    fflush(stdout);
    return 1;
}

/* rc < 0 → blocked with the given errno, else ok.  Call it only with a
 * saved rc (never report(f(), errno): argument evaluation order is unspecified). */
static int report(long rc, int e)
{
    return rc < 0 ? report_blocked(e) : report_ok();
}

static int usage(const char *msg)
{
    fprintf(stderr, "aegis-probe: %s\n", msg);
    fprintf(stderr,
            "usage: aegis-probe NAME [ARGS]\n"
            "  read-file PATH | write-file PATH | create-file PATH | rename FROM TO | open-exe-write\n"
            "  list-fds DIR | status\n"
            "  unshare-user | unshare-mount | unshare-net | setns | clone-newuser\n"
            "  mount | mknod | ptrace-sibling | process-vm-readv\n"
            "  io-uring | userfaultfd | bpf | perf-event-open | keyctl | add-key\n"
            "  socket-packet | socket-icmp-raw | socket-netlink-netfilter | socket-alg\n"
            "  socket-vsock | socket-unix | socket-inet | socket-inet6\n"
            "  socket-family-masked [packet|vsock|alg|netlink|unix|inet]\n"
            "  x32 | int80 | tiocsti | tiocsti-padded | connect-tcp HOST PORT\n"
            "  personality-readimpl | fork-bomb SECONDS [MAX] | exec-race ALLOWED DENIED N\n");
    return 2;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* Fork a child that just waits to be killed; returns its pid or -1. */
static pid_t spawn_sleeper(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        for (;;)
            pause();
    }
    return pid;
}

static void reap(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
}

static int wait_child_exit0(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Filesystem probes (E-01, E-03, E-17, E-19, E-39)                          */
/* ------------------------------------------------------------------------ */

static int probe_read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return report_blocked(errno);
    char c;
    ssize_t n = read(fd, &c, 1);
    int e = errno;
    close(fd);
    return report(n, e);
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int probe_write_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return report_blocked(errno);
    /* For /proc and /sys control files (core_pattern, sysrq-trigger, ...) a
     * successful open for writing is the proof; never actually write there.
     * Elsewhere, a zero-length append exercises write(2) without changing
     * the file. */
    if (!starts_with(path, "/proc/") && !starts_with(path, "/sys/")) {
        ssize_t n = write(fd, "", 0);
        if (n < 0) {
            int e = errno;
            close(fd);
            return report_blocked(e);
        }
    }
    close(fd);
    return report_ok();
}

static int probe_create_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return report_blocked(errno);
    close(fd);
    unlink(path);
    return report_ok();
}

/* rename(2) itself, not mv (which copies on EXDEV): what the filesystem
 * answers, e.g. an overlay's EXDEV for a directory of a lower layer. */
static int probe_rename(const char *from, const char *to)
{
    int rc = rename(from, to);
    int e = errno;
    return report(rc, e);
}

/*
 * E-01 / CVE-2019-5736: open the binary behind /proc/self/exe for writing.
 *  1. open("/proc/self/exe", O_RDWR)
 *  2. open("/proc/self/exe", O_PATH), then reopen /proc/self/fd/N O_RDWR
 *  3. if both only failed with ETXTBSY (the file is busy because *we* are
 *     executing it), do what the CVE exploit did: keep the O_PATH handle,
 *     re-execute from an in-memory copy (so the original is no longer being
 *     executed) and reopen the handle for writing from there (stage 2).
 * ok if any of these succeeds.  Nothing is ever written.
 */
static int exe_reopen_rw(int pathfd)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/self/fd/%d", pathfd);
    return open(p, O_RDWR | O_CLOEXEC);
}

static int probe_open_exe_write_stage2(const char *fdstr)
{
    int pathfd = atoi(fdstr);
    int fd = exe_reopen_rw(pathfd);
    if (fd < 0)
        return report_blocked(errno);
    close(fd);
    return report_ok();
}

static int probe_open_exe_write(void)
{
    int fd = open("/proc/self/exe", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        return report_ok();
    }
    int e1 = errno;

    int pathfd = open("/proc/self/exe", O_PATH); /* deliberately inheritable */
    if (pathfd < 0)
        return report_blocked(e1);
    fd = exe_reopen_rw(pathfd);
    if (fd >= 0) {
        close(fd);
        return report_ok();
    }
    int e2 = errno;
    if (e1 != ETXTBSY && e2 != ETXTBSY)
        return report_blocked(e2);

    /* Stage 2 from an in-memory copy of ourselves. */
    int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    int mfd = (int)syscall(SYS_memfd_create, "aegis-probe", MFD_CLOEXEC);
    if (self < 0 || mfd < 0)
        return report_blocked(e2);
    char buf[65536];
    ssize_t n;
    while ((n = read(self, buf, sizeof(buf))) > 0) {
        if (write(mfd, buf, (size_t)n) != n)
            return report_blocked(e2);
    }
    close(self);
    if (n < 0)
        return report_blocked(e2);
    char fdarg[16];
    snprintf(fdarg, sizeof(fdarg), "%d", pathfd);
    char *const argv[] = {"aegis-probe", "open-exe-write", "--stage2", fdarg, NULL};
    extern char **environ;
    fflush(stdout);
    syscall(SYS_execveat, mfd, "", argv, environ, AT_EMPTY_PATH);
    /* re-exec not possible: the ETXTBSY result stands */
    return report_blocked(e2);
}

/* E-03: list the fd numbers in DIR (e.g. /proc/self/fd), minus the fd used to
 * read the directory itself. */
static int probe_list_fds(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return report_blocked(errno);
    int dfd = dirfd(d);
    struct stat dst;
    if (fstat(dfd, &dst) < 0)
        return report_blocked(errno);

    int fds[4096];
    char links[8192];
    size_t nfds = 0, lpos = 0;
    links[0] = '\0';
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        int n = atoi(de->d_name);
        if (n == dfd) {
            /* skip it only if it really is our own directory handle */
            struct stat st;
            if (fstatat(dfd, de->d_name, &st, 0) == 0 && st.st_dev == dst.st_dev &&
                st.st_ino == dst.st_ino)
                continue;
        }
        if (nfds < sizeof(fds) / sizeof(fds[0]))
            fds[nfds++] = n;
        char target[512];
        ssize_t tl = readlinkat(dfd, de->d_name, target, sizeof(target) - 1);
        if (tl < 0)
            tl = 0;
        target[tl] = '\0';
        if (lpos < sizeof(links) - 1)
            lpos += (size_t)snprintf(links + lpos, sizeof(links) - lpos, " %d=%s", n, target);
        if (lpos >= sizeof(links))
            lpos = sizeof(links) - 1;
        /* an fd closed while we looked (readlinkat ENOENT) is not a
         * readdir error: only readdir may leave errno set below */
        errno = 0;
    }
    int e = errno;
    closedir(d);
    if (e != 0)
        return report_blocked(e);

    /* sort numerically */
    for (size_t i = 1; i < nfds; i++)
        for (size_t j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
            int t = fds[j];
            fds[j] = fds[j - 1];
            fds[j - 1] = t;
        }
    report_ok();
    printf("fds:");
    for (size_t i = 0; i < nfds; i++)
        printf(" %d", fds[i]);
    printf("\nlinks:%s\n", links);
    fflush(stdout);
    return 0;
}

/* E-24: print the capability / NNP / seccomp lines of /proc/self/status. */
static int probe_status(void)
{
    static const char *keys[] = {"CapInh:", "CapPrm:", "CapEff:", "CapBnd:",  "CapAmb:",
                                 "NoNewPrivs:", "Seccomp:", "Seccomp_filters:"};
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return report_blocked(errno);
    report_ok();
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            if (starts_with(line, keys[i])) {
                fputs(line, stdout);
                break;
            }
    }
    fclose(f);
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Namespaces, mounts, devices (E-14, E-15, E-16, E-20, E-21)                */
/* ------------------------------------------------------------------------ */

static int probe_unshare(int flag)
{
    int rc = unshare(flag);
    return report(rc, errno);
}

static int probe_setns(void)
{
    int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return report_blocked(errno);
    int rc = setns(fd, CLONE_NEWNET);
    int e = errno;
    close(fd);
    return report(rc, e);
}

static int probe_clone_newuser(void)
{
    fflush(stdout);
    long pid = syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | SIGCHLD), 0UL, 0UL, 0UL, 0UL);
    if (pid < 0)
        return report_blocked(errno);
    if (pid == 0)
        _exit(0);
    if (wait_child_exit0((pid_t)pid) < 0)
        return report_blocked(ECHILD);
    return report_ok();
}

static int probe_mount(void)
{
    char dir[] = "/tmp/aegis-probe-mnt-XXXXXX";
    const char *target = mkdtemp(dir);
    int made = target != NULL;
    if (!made)
        target = "/tmp"; /* read-only /tmp: mount(2) still reports its own errno */
    int rc = mount("aegis-probe", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k");
    int e = errno;
    if (rc == 0)
        umount2(target, MNT_DETACH);
    if (made)
        rmdir(target);
    return report(rc, e);
}

static int probe_mknod(void)
{
    static const char *dirs[] = {"/tmp", "/dev/shm", "/var/tmp"};
    int e = EINVAL;
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "%s/aegis-probe-null-%d", dirs[i], (int)getpid());
        if (mknod(path, S_IFCHR | 0600, makedev(1, 3)) == 0) {
            unlink(path);
            return report_ok();
        }
        e = errno;
        /* only try another directory if this one was simply not writable */
        if (e != EROFS && e != EACCES && e != ENOENT)
            break;
    }
    return report_blocked(e);
}

/* ------------------------------------------------------------------------ */
/* Cross-process access (E-25)                                               */
/* ------------------------------------------------------------------------ */

static int probe_ptrace_sibling(void)
{
    pid_t child = spawn_sleeper();
    if (child < 0)
        return report_blocked(errno);
    long rc = ptrace(PTRACE_ATTACH, child, NULL, NULL);
    int e = errno;
    if (rc == 0) {
        int st;
        waitpid(child, &st, __WALL);
        ptrace(PTRACE_DETACH, child, NULL, NULL);
    }
    reap(child);
    return report(rc, e);
}

static volatile uint64_t vm_secret = 0x5ec12e7aeb15ULL;

static int probe_process_vm_readv(void)
{
    pid_t child = spawn_sleeper();
    if (child < 0)
        return report_blocked(errno);
    uint64_t got = 0;
    struct iovec local = {.iov_base = &got, .iov_len = sizeof(got)};
    struct iovec remote = {.iov_base = (void *)&vm_secret, .iov_len = sizeof(got)};
    ssize_t n = process_vm_readv(child, &local, 1, &remote, 1, 0);
    int e = errno;
    reap(child);
    if (n == (ssize_t)sizeof(got) && got != vm_secret)
        return report_blocked(EIO);
    return report(n, e);
}

/* ------------------------------------------------------------------------ */
/* Kernel attack surface (E-26 .. E-30)                                      */
/* ------------------------------------------------------------------------ */

static int probe_io_uring(void)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    long fd = syscall(SYS_io_uring_setup, 1, &p);
    if (fd < 0)
        return report_blocked(errno);
    close((int)fd);
    return report_ok();
}

static int probe_userfaultfd(void)
{
    long fd = syscall(SYS_userfaultfd, O_CLOEXEC);
    if (fd < 0)
        return report_blocked(errno);
    close((int)fd);
    return report_ok();
}

static int probe_bpf(void)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr));
    if (fd < 0)
        return report_blocked(errno);
    close((int)fd);
    return report_ok();
}

static int probe_perf_event_open(void)
{
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.disabled = 1;
    attr.exclude_kernel = 1; /* user-only: allowed natively even unprivileged */
    attr.exclude_hv = 1;
    long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0UL);
    if (fd < 0)
        return report_blocked(errno);
    close((int)fd);
    return report_ok();
}

static int probe_keyctl(void)
{
    long id = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1);
    return report(id, errno);
}

static int probe_add_key(void)
{
    long id = syscall(SYS_add_key, "user", "aegis-probe", "x", (size_t)1,
                      KEY_SPEC_SESSION_KEYRING);
    if (id < 0)
        return report_blocked(errno);
    syscall(SYS_keyctl, KEYCTL_INVALIDATE, id); /* leave nothing behind */
    return report_ok();
}

/* ------------------------------------------------------------------------ */
/* Sockets (E-31 .. E-34)                                                    */
/* ------------------------------------------------------------------------ */

static int probe_socket(int family, int type, int proto)
{
    int fd = socket(family, type | SOCK_CLOEXEC, proto);
    if (fd < 0)
        return report_blocked(errno);
    close(fd);
    return report_ok();
}

static int probe_socket_alg(void)
{
    int fd = socket(AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return report_blocked(errno);
    struct sockaddr_alg sa;
    memset(&sa, 0, sizeof(sa));
    sa.salg_family = AF_ALG;
    strcpy((char *)sa.salg_type, "aead");
    strcpy((char *)sa.salg_name, "gcm(aes)");
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    int e = errno;
    close(fd);
    return report(rc, e);
}

/* E-33: the family argument with a high bit set; the kernel truncates it to
 * int, so a seccomp filter that compares all 64 bits against a deny list is
 * bypassed unless it treats the high half correctly. */
static int probe_socket_family_masked(const char *which)
{
    unsigned long family, type = SOCK_RAW, proto = 0;
    if (!which || strcmp(which, "packet") == 0) {
        family = AF_PACKET;
        proto = htons(ETH_P_ALL);
    } else if (strcmp(which, "vsock") == 0) {
        family = AF_VSOCK;
        type = SOCK_STREAM;
    } else if (strcmp(which, "alg") == 0) {
        family = AF_ALG;
        type = SOCK_SEQPACKET;
    } else if (strcmp(which, "netlink") == 0) {
        family = AF_NETLINK;
        proto = NETLINK_NETFILTER;
    } else if (strcmp(which, "unix") == 0) {
        family = AF_UNIX;
        type = SOCK_STREAM;
    } else if (strcmp(which, "inet") == 0) {
        family = AF_INET;
        type = SOCK_STREAM;
    } else {
        return usage("socket-family-masked: unknown family");
    }
    long fd = syscall(SYS_socket, family | (1UL << 32), type | SOCK_CLOEXEC, proto);
    if (fd < 0)
        return report_blocked(errno);
    close((int)fd);
    return report_ok();
}

/* ------------------------------------------------------------------------ */
/* ABI / arch gates (E-35, E-36, E-37)                                       */
/* ------------------------------------------------------------------------ */

static int probe_x32(void)
{
    long rc = syscall(0x40000000L | SYS_getpid);
    if (rc < 0)
        return report_blocked(errno);
    return report_ok();
}

static int probe_int80(void)
{
    long ret;
    /* i386 __NR_getpid is 20; r8-r11 are not preserved by the compat entry */
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory", "cc", "r8", "r9", "r10", "r11");
    if (ret < 0 && ret > -4096)
        return report_blocked((int)-ret);
    if (ret <= 0)
        return report_blocked(EINVAL);
    return report_ok();
}

static int probe_personality_readimpl(void)
{
    int rc = personality(READ_IMPLIES_EXEC);
    return report(rc, errno);
}

/* ------------------------------------------------------------------------ */
/* Terminal injection (E-10, E-12)                                           */
/* ------------------------------------------------------------------------ */

/* Open a fresh pty pair and return the slave fd (or -1 with errno). */
static int open_pty_slave(int *master_out)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0)
        return -1;
    if (grantpt(m) < 0 || unlockpt(m) < 0) {
        int e = errno;
        close(m);
        errno = e;
        return -1;
    }
    const char *name = ptsname(m);
    int s = name ? open(name, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
    if (s < 0) {
        int e = errno;
        close(m);
        errno = e;
        return -1;
    }
    *master_out = m;
    return s;
}

static int probe_tiocsti(int padded)
{
    int m = -1;
    /* No pty available (e.g. no /dev/ptmx inside)?  Fall back to the bwrap
     * try-syscall form with fd -1: an allowed ioctl then fails with EBADF,
     * a seccomp-refused one with EPERM (CVE-2019-10063 pattern). */
    int s = open_pty_slave(&m);
    char ch = '\n';
    unsigned long cmd = TIOCSTI;
    if (padded)
        cmd |= 0x123UL << 32;
    long rc = syscall(SYS_ioctl, (long)s, cmd, &ch);
    int e = errno;
    if (s >= 0)
        close(s);
    if (m >= 0)
        close(m);
    return report(rc, e);
}

/* ------------------------------------------------------------------------ */
/* Network (N-02, N-06)                                                      */
/* ------------------------------------------------------------------------ */

static int probe_connect_tcp(const char *host, const char *port)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
        return usage("connect-tcp: HOST must be a numeric address, PORT a number");
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        int e = errno;
        freeaddrinfo(ai);
        return report_blocked(e);
    }
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    int e = errno;
    freeaddrinfo(ai);
    if (rc < 0 && e == EINPROGRESS) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int pr = poll(&pfd, 1, 2000);
        if (pr == 0) {
            rc = -1;
            e = ETIMEDOUT;
        } else if (pr < 0) {
            rc = -1;
            e = errno;
        } else {
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
                rc = -1;
                e = errno;
            } else if (soerr != 0) {
                rc = -1;
                e = soerr;
            } else {
                rc = 0;
            }
        }
    }
    close(fd);
    return report(rc, e);
}

/* ------------------------------------------------------------------------ */
/* Resource exhaustion                                                */
/* ------------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Fork as fast as possible for SECONDS (children just pause, with stdio
 * closed so they do not hold the caller's pipes), never more than MAX
 * children (a safety cap for hosts without any limit).  The children are
 * deliberately left behind: reaping them is the sandbox's job.  Prints
 *   fork-bomb: forks=N failures=M first_errno=EAGAIN capped=0
 * and exits 0; the test judges. */
/* Race an argv/path rewrite against the exec check: a thread flips the
 * path buffer between an allowed and a denied binary while the main thread
 * execs it (in a child) N times. Prints how many times the denied binary's
 * marker output appeared: it must be 0 inside a sandbox that denies it.
 *   exec-race: attempts=N denied_ran=M */
struct race { char path[256]; const char *a, *b; volatile int stop; };

static void *race_flipper(void *arg)
{
    struct race *r = arg;
    while (!r->stop) {
        strcpy(r->path, r->a);
        strcpy(r->path, r->b);
    }
    return NULL;
}

static int probe_exec_race(const char *allowed, const char *denied, const char *n_s)
{
    struct race r = { .a = allowed, .b = denied };
    long n = atol(n_s), ran = 0;
    pthread_t t;

    strcpy(r.path, allowed);
    if (n <= 0 || pthread_create(&t, NULL, race_flipper, &r) != 0)
        return usage("exec-race: ALLOWED DENIED N");
    for (long i = 0; i < n; i++) {
        int pfd[2], status;
        char buf[64];
        if (pipe(pfd) < 0)
            break;
        pid_t pid = fork();
        if (pid == 0) {
            char *argv[] = { r.path, NULL };
            dup2(pfd[1], 1);
            execv(r.path, argv);
            _exit(127);
        }
        close(pfd[1]);
        ssize_t got = read(pfd[0], buf, sizeof buf - 1);
        close(pfd[0]);
        waitpid(pid, &status, 0);
        /* whoami prints a user name; true prints nothing */
        if (got > 0)
            ran++;
    }
    r.stop = 1;
    pthread_join(t, NULL);
    printf("exec-race: attempts=%ld denied_ran=%ld\n", n, ran);
    return 0;
}

static int probe_fork_bomb(const char *secs_s, const char *max_s)
{
    double secs = atof(secs_s);
    long max = max_s ? atol(max_s) : 16384;
    if (secs <= 0 || max <= 0)
        return usage("fork-bomb: SECONDS and MAX must be positive");
    fflush(stdout);
    double deadline = now_s() + secs;
    long forks = 0, failures = 0;
    int first_errno = 0, capped = 0;
    while (now_s() < deadline) {
        if (forks >= max) {
            capped = 1;
            break;
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(0);
            close(1);
            close(2);
            for (;;)
                pause();
        }
        if (pid < 0) {
            if (!first_errno)
                first_errno = errno;
            failures++;
            continue;
        }
        forks++;
    }
    char buf[32];
    printf("%s: forks=%ld failures=%ld first_errno=%s capped=%d\n", probe_name, forks, failures,
           first_errno ? errno_name(first_errno, buf, sizeof(buf)) : "none", capped);
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage("missing probe name");
    const char *n = argv[1];
    const char *a1 = argc > 2 ? argv[2] : NULL;
    const char *a2 = argc > 3 ? argv[3] : NULL;
    const char *a3 = argc > 4 ? argv[4] : NULL;
    probe_name = n;
    setvbuf(stdout, NULL, _IOLBF, 0);

#define IS(s) (strcmp(n, (s)) == 0)
#define NEED(k)                                                                                    \
    do {                                                                                           \
        if (argc < 2 + (k))                                                                        \
            return usage("missing argument");                                                      \
    } while (0)

    if (IS("read-file")) {
        NEED(1);
        return probe_read_file(a1);
    }
    if (IS("write-file")) {
        NEED(1);
        return probe_write_file(a1);
    }
    if (IS("create-file")) {
        NEED(1);
        return probe_create_file(a1);
    }
    if (IS("rename")) {
        NEED(2);
        return probe_rename(a1, a2);
    }
    if (IS("open-exe-write")) {
        if (a1 && strcmp(a1, "--stage2") == 0 && a2)
            return probe_open_exe_write_stage2(a2);
        return probe_open_exe_write();
    }
    if (IS("list-fds")) {
        NEED(1);
        return probe_list_fds(a1);
    }
    if (IS("status"))
        return probe_status();
    if (IS("unshare-user"))
        return probe_unshare(CLONE_NEWUSER);
    if (IS("unshare-mount"))
        return probe_unshare(CLONE_NEWNS);
    if (IS("unshare-net"))
        return probe_unshare(CLONE_NEWNET);
    if (IS("setns"))
        return probe_setns();
    if (IS("clone-newuser"))
        return probe_clone_newuser();
    if (IS("mount"))
        return probe_mount();
    if (IS("mknod"))
        return probe_mknod();
    if (IS("ptrace-sibling"))
        return probe_ptrace_sibling();
    if (IS("process-vm-readv"))
        return probe_process_vm_readv();
    if (IS("io-uring"))
        return probe_io_uring();
    if (IS("userfaultfd"))
        return probe_userfaultfd();
    if (IS("bpf"))
        return probe_bpf();
    if (IS("perf-event-open"))
        return probe_perf_event_open();
    if (IS("keyctl"))
        return probe_keyctl();
    if (IS("add-key"))
        return probe_add_key();
    if (IS("socket-packet"))
        return probe_socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (IS("socket-icmp-raw"))
        return probe_socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    if (IS("socket-netlink-netfilter"))
        return probe_socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER);
    if (IS("socket-alg"))
        return probe_socket_alg();
    if (IS("socket-vsock"))
        return probe_socket(AF_VSOCK, SOCK_STREAM, 0);
    if (IS("socket-unix"))
        return probe_socket(AF_UNIX, SOCK_STREAM, 0);
    if (IS("socket-inet"))
        return probe_socket(AF_INET, SOCK_STREAM, 0);
    if (IS("socket-inet6"))
        return probe_socket(AF_INET6, SOCK_STREAM, 0);
    if (IS("socket-family-masked"))
        return probe_socket_family_masked(a1);
    if (IS("x32"))
        return probe_x32();
    if (IS("int80"))
        return probe_int80();
    if (IS("tiocsti"))
        return probe_tiocsti(0);
    if (IS("tiocsti-padded"))
        return probe_tiocsti(1);
    if (IS("connect-tcp")) {
        NEED(2);
        return probe_connect_tcp(a1, a2);
    }
    if (IS("personality-readimpl"))
        return probe_personality_readimpl();
    if (IS("fork-bomb")) {
        NEED(1);
        return probe_fork_bomb(a1, a2);
    }
    if (IS("exec-race")) {
        NEED(3);
        return probe_exec_race(a1, a2, a3);
    }
#undef IS
#undef NEED
    return usage("unknown probe name");
}
