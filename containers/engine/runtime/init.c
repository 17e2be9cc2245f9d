/*
 * webengine-init: the native runtime's container init, as runc's nsexec and init are runc's.
 *
 *     webengine-init            (started by the runtime with the fds below; reads its plan on fd 3)
 *
 * The runtime (container.py) works out everything a container's set-up decides from its OCI
 * spec, in Python: which mounts with which flags, which devices, capability masks, the seccomp
 * program compiled to BPF, rlimits, the order runc does them in (plan.py). This program only
 * carries that plan out, one step after another, in the processes that become the container:
 * a forked interpreter did it before, and copying, touching and tearing down an interpreter's
 * memory twice a container cost more than all the steps themselves.
 *
 * Hand-written: runc and crun carry such a program inside them, but neither takes a plan, and
 * neither can leave a container waiting for a process given later (the standby's wait below).
 *
 * Descriptors: 0-2 the container's stdio, 3 the sync channel (SOCK_SEQPACKET, JSON messages as
 * sync.py describes), 4 the exec fifo opened O_PATH, 5 the console socket, 6 the process fifo
 * of a deferred container. Any other is closed first.
 *
 * The plan: one message of NUL-terminated strings, a step being its name, the count of its
 * arguments, then the arguments. The steps before `fork` run in the first process (it joins
 * and unshares namespaces, then forks init into them, sends init's pid and exits); the rest run
 * in init. An error ends the process with {"type": "error", "message": ..., "code": N} on the
 * channel (on stderr once nobody listens), N being the exit code.
 *
 * A deferred container's init ends in `stand-by`: it tells `start` it is running by writing "0"
 * into the exec fifo, then waits for `start` to write the process into the process fifo: a
 * 4-byte native length, then a plan of one step, "process" (its cwd, arguments and environment).
 * It then changes directory, looks the executable up as Go's exec.LookPath does and execs it;
 * the exec fifo's last writer closes on exec, so `start` reads its end (success), or the error
 * as JSON, worded as Docker words it.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

enum { SYNC_FD = 3, FIFO_FD = 4, CONSOLE_FD = 5, PROCESS_FD = 6, FIRST_OTHER_FD = 7 };

#define MAX_PLAN (1 << 20)
#define MAX_SYMLINKS 255

static int channel = SYNC_FD;   /* where errors go; -1 once nobody listens */
static int exec_fifo = -1;      /* a standby's exec fifo */
static int errors_to_fifo;      /* once a standby waits, its process's errors go to the exec fifo */
static const char *rootfs = ""; /* the container's root before pivot_root */

static void json_string(char *out, size_t size, const char *text) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p && n + 7 < size; p++) {
        if (*p == '"' || *p == '\\') {
            out[n++] = '\\';
            out[n++] = (char)*p;
        } else if (*p < 0x20) {
            n += (size_t)snprintf(out + n, size - n, "\\u%04x", *p);
        } else {
            out[n++] = (char)*p;
        }
    }
    out[n] = '\0';
}

static void fail(int code, const char *format, ...) __attribute__((format(printf, 2, 3), noreturn));

static void fail(int code, const char *format, ...) {
    char message[4096], escaped[8192], line[8448];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    json_string(escaped, sizeof escaped, message);
    if (errors_to_fifo) {
        int n = snprintf(line, sizeof line, "{\"message\": \"%s\", \"code\": %d}", escaped, code);
        if (write(exec_fifo, line, (size_t)n) < 0) {
            /* nobody to tell: the exit code says it */
        }
        _exit(code);
    }
    int n = snprintf(line, sizeof line, "{\"type\": \"error\", \"message\": \"%s\", \"code\": %d}", escaped, code);
    if (channel < 0 || send(channel, line, (size_t)n, MSG_NOSIGNAL) < 0)
        dprintf(2, "webengine-runtime: %s\n", message);
    _exit(code);
}

/* strerror as Go and Python print it: lower case ("no such file or directory"). */
static const char *error_text(int err) {
    static char text[256];
    snprintf(text, sizeof text, "%s", strerror(err));
    for (char *p = text; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return text;
}

static void send_message(const char *message) {
    if (send(channel, message, strlen(message), MSG_NOSIGNAL) < 0)
        fail(1, "send %s to the runtime: %s", message, error_text(errno));
}

/* The plan */

static char plan[MAX_PLAN];
static char *words[MAX_PLAN];
static size_t nwords;

/* The first `size` bytes of `plan` as its words. */
static void split_words(size_t size) {
    if (size == 0 || size >= sizeof plan || plan[size - 1] != '\0')
        fail(1, "the plan is empty, too long or malformed (%zu bytes)", size);
    nwords = 0;
    for (char *p = plan; p < plan + size; p += strlen(p) + 1)
        words[nwords++] = p;
}

static void read_plan(void) {
    ssize_t size = recv(channel, plan, sizeof plan, MSG_TRUNC);
    if (size < 0)
        fail(1, "read the plan: %s", error_text(errno));
    split_words((size_t)size);
}

/* A decimal number of the plan; strtoull alone would take "-1" and "0x1f" too. */
static unsigned long long number(const char *text) {
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || !isdigit((unsigned char)*text) || *end)
        fail(1, "the plan holds %s where a number belongs", text);
    return value;
}

static const char *optional(const char *text) { return *text ? text : NULL; }

/* Paths */

/* snprintf that refuses to cut a path short. */
static void path_format(char *out, size_t size, const char *format, ...) __attribute__((format(printf, 3, 4)));

static void path_format(char *out, size_t size, const char *format, ...) {
    va_list args;
    va_start(args, format);
    int n = vsnprintf(out, size, format, args);
    va_end(args);
    if (n < 0 || (size_t)n >= size)
        fail(1, "a path is too long: %.200s...", out);
}

/* `unsafe` resolved inside the rootfs, every symlink evaluated as if the rootfs were `/`
 * (rootfs.py's secure_join, filepath-securejoin's rule): an image's links never lead out. */
static void secure_join(char *out, size_t size, const char *unsafe) {
    char resolved[PATH_MAX] = "", remaining[PATH_MAX * 2], candidate[PATH_MAX * 2], target[PATH_MAX];
    int links = 0;
    snprintf(remaining, sizeof remaining, "%s", unsafe);
    char *rest = remaining;
    while (*rest) {
        while (*rest == '/')
            rest++;
        if (!*rest)
            break;
        char *slash = strchrnul(rest, '/');
        char part[PATH_MAX];
        snprintf(part, sizeof part, "%.*s", (int)(slash - rest), rest);
        rest = slash;
        if (!strcmp(part, ".") || !*part)
            continue;
        if (!strcmp(part, "..")) {
            char *last = strrchr(resolved, '/');
            if (last)
                *last = '\0';
            continue;
        }
        path_format(candidate, sizeof candidate, "%s%s/%s", rootfs, resolved, part);
        struct stat st;
        if (lstat(candidate, &st) < 0 || !S_ISLNK(st.st_mode)) {
            size_t length = strlen(resolved);
            path_format(resolved + length, sizeof resolved - length, "/%s", part);
            continue;
        }
        if (++links > MAX_SYMLINKS)
            fail(1, "%s: too many levels of symbolic links", unsafe);
        ssize_t n = readlink(candidate, target, sizeof target - 1);
        if (n < 0)
            fail(1, "readlink %s: %s", candidate, error_text(errno));
        target[n] = '\0';
        if (target[0] == '/')
            resolved[0] = '\0';
        char joined[PATH_MAX * 2];
        snprintf(joined, sizeof joined, "%s/%s", target, rest);
        snprintf(remaining, sizeof remaining, "%s", joined);
        rest = remaining;
    }
    path_format(out, size, "%s%s", rootfs, *resolved ? resolved : "/");
}

/* A step's path: inside the rootfs (`join` "1") or as it is. */
static void step_path(char *out, size_t size, const char *path, const char *join) {
    if (!strcmp(join, "1"))
        secure_join(out, size, path);
    else
        snprintf(out, size, "%s", path);
}

/* os.makedirs(path, exist_ok=True) */
static void make_dirs(const char *path, mode_t mode) {
    char buffer[PATH_MAX];
    snprintf(buffer, sizeof buffer, "%s", path);
    for (char *p = buffer + 1;; p++) {
        if (*p == '/' || !*p) {
            char saved = *p;
            *p = '\0';
            if (mkdir(buffer, mode) < 0 && errno != EEXIST)
                fail(1, "mkdir %s: %s", buffer, error_text(errno));
            *p = saved;
            if (!saved)
                break;
        }
    }
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
        fail(1, "mkdir %s: not a directory", path);
}

static void make_parent(const char *path) {
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        make_dirs(parent, 0777);
    }
}

/* Steps */

static void do_mount(const char *source, const char *target, const char *fstype, unsigned long flags,
                     const char *data) {
    if (mount(source, target, fstype, flags, data) < 0)
        fail(1, "mount %s on %s (%s, flags %#lx): %s", source ? source : "none", target, fstype ? fstype : "none",
             flags, error_text(errno));
}

/* The nosuid/nodev/noexec flags already on the mount at `path`: a remount may not clear flags
 * a more privileged namespace locked (mount_namespaces(7), "Restrictions"). */
static unsigned long locked_flags(const char *path) {
    struct statvfs st;
    if (statvfs(path, &st) < 0)
        fail(1, "statvfs %s: %s", path, error_text(errno));
    return (st.f_flag & ST_NOSUID ? MS_NOSUID : 0) | (st.f_flag & ST_NODEV ? MS_NODEV : 0) |
           (st.f_flag & ST_NOEXEC ? MS_NOEXEC : 0);
}

static void readonly_path(const char *path) {
    if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
        if (errno == ENOENT)
            return;
        fail(1, "mount %s read-only: %s", path, error_text(errno));
    }
    do_mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | locked_flags(path), NULL);
}

static void mask_path(const char *path) {
    struct stat st;
    if (stat(path, &st) < 0) {
        if (errno == ENOENT)
            return;
        fail(1, "stat %s: %s", path, error_text(errno));
    }
    if (S_ISDIR(st.st_mode))
        do_mount("tmpfs", path, "tmpfs", MS_RDONLY, NULL);
    else if (mount("/dev/null", path, NULL, MS_BIND, NULL) < 0 && errno != ENOENT)
        fail(1, "mask %s: %s", path, error_text(errno));
}

static void pivot(void) {
    if (chdir(rootfs) < 0)
        fail(1, "chdir %s: %s", rootfs, error_text(errno));
    /* pivot_root(".", ".") stacks the old root on the new one (pivot_root(2), NOTES); a slave,
     * its unmount does not propagate to the host. */
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        fail(1, "pivot_root %s: %s", rootfs, error_text(errno));
    do_mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL);
    if (umount2(".", MNT_DETACH) < 0)
        fail(1, "unmount the old root: %s", error_text(errno));
    if (chdir("/") < 0)
        fail(1, "chdir /: %s", error_text(errno));
    rootfs = "";
}

/* Loopback is down in a new network namespace (network_namespaces(7)); every container expects it up. */
static void loopback_up(void) {
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strcpy(request.ifr_name, "lo");
    if (sock < 0 || ioctl(sock, SIOCGIFFLAGS, &request) < 0)
        fail(1, "read the flags of lo: %s", error_text(errno));
    request.ifr_flags |= IFF_UP;
    if (ioctl(sock, SIOCSIFFLAGS, &request) < 0)
        fail(1, "bring lo up: %s", error_text(errno));
    close(sock);
}

static void write_file(const char *path, const char *value) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, value, strlen(value)) < 0)
        fail(1, "write %s: %s", path, error_text(errno));
    close(fd);
}

/* The console: a new pty in the container's own devpts instance. */
static int console_master = -1, console_slave = -1;
static char console_name[PATH_MAX];

static void open_console(const char *devpts) {
    char path[PATH_MAX];
    path_format(path, sizeof path, "%s/ptmx", devpts);
    console_master = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    int unlock = 0, pty;
    if (console_master < 0 || ioctl(console_master, TIOCSPTLCK, &unlock) < 0 || ioctl(console_master, TIOCGPTN, &pty) < 0)
        fail(1, "open a pty in %s: %s", devpts, error_text(errno));
    path_format(console_name, sizeof console_name, "%s/%d", devpts, pty);
    console_slave = open(console_name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (console_slave < 0)
        fail(1, "open %s: %s", console_name, error_text(errno));
}

/* Send the master as runc does on a console socket (its name, the fd in SCM_RIGHTS), then make
 * the slave the controlling terminal and stdio of this session leader. */
static void hand_console(void) {
    char control[CMSG_SPACE(sizeof(int))];
    struct iovec data = {console_name, strlen(console_name)};
    struct msghdr message = {.msg_iov = &data, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &console_master, sizeof(int));
    if (sendmsg(CONSOLE_FD, &message, MSG_NOSIGNAL) < 0)
        fail(1, "send the console: %s", error_text(errno));
    close(console_master);
    close(CONSOLE_FD);
    if (ioctl(console_slave, TIOCSCTTY, 0) < 0)
        fail(1, "make the console the controlling terminal: %s", error_text(errno));
    for (int fd = 0; fd < 3; fd++)
        if (dup2(console_slave, fd) < 0)
            fail(1, "dup2 the console: %s", error_text(errno));
    if (console_slave > 2)
        close(console_slave);
}

/* Capabilities, in runc's order (capabilities.py's module docstring). */

static int last_cap;

static void capset_masks(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    for (int half = 0; half < 2; half++) {
        data[half].effective = (uint32_t)(effective >> (32 * half));
        data[half].permitted = (uint32_t)(permitted >> (32 * half));
        data[half].inheritable = (uint32_t)(inheritable >> (32 * half));
    }
    if (syscall(SYS_capset, &header, data) < 0)
        fail(1, "capset: %s", error_text(errno));
}

/* Drop every capability of the running kernel not in `keep`; one already out is skipped, so
 * that a thread without CAP_SETPCAP can still apply a set it already satisfies. */
static void drop_bounding_except(uint64_t keep) {
    for (int cap = 0; cap <= last_cap; cap++)
        if (!(keep >> cap & 1) && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1 &&
            prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            fail(1, "drop capability %d from the bounding set: %s", cap, error_text(errno));
}

static void apply_capabilities(uint64_t bounding, uint64_t effective, uint64_t permitted, uint64_t inheritable,
                               uint64_t ambient) {
    /* PR_CAPBSET_DROP needs CAP_SETPCAP effective, which setuid(2) with KEEPCAPS cleared:
     * raise the effective set back to what is still permitted first. */
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct held[2];
    if (syscall(SYS_capget, &header, held) < 0)
        fail(1, "capget: %s", error_text(errno));
    uint64_t held_permitted = held[0].permitted | (uint64_t)held[1].permitted << 32;
    uint64_t held_inheritable = held[0].inheritable | (uint64_t)held[1].inheritable << 32;
    capset_masks(held_permitted, held_permitted, held_inheritable);
    drop_bounding_except(bounding);
    capset_masks(effective, permitted, inheritable);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        fail(1, "clear the ambient capabilities: %s", error_text(errno));
    for (int cap = 0; cap < 64; cap++)
        if (ambient >> cap & 1 && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
            fail(1, "raise ambient capability %d: %s", cap, error_text(errno));
}

static void set_user(uid_t uid, gid_t gid, const char *groups) {
    static gid_t list[NGROUPS_MAX];
    size_t count = 0;
    for (const char *p = groups; *p && count < NGROUPS_MAX;) {
        char *end;
        list[count++] = (gid_t)strtoul(p, &end, 10);
        p = *end == ',' ? end + 1 : end;
    }
    if (setgroups(count, list) < 0 || setresgid(gid, gid, gid) < 0)
        fail(1, "set the groups of the process: %s", error_text(errno));
    /* Without KEEPCAPS, setuid(2) from root clears the permitted set: nothing to give a user. */
    if (uid != 0 && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        fail(1, "keep capabilities across setuid: %s", error_text(errno));
    if (setresuid(uid, uid, uid) < 0)
        fail(1, "set the user of the process: %s", error_text(errno));
}

/* Give the process's stdio to its user, as runc does (fixStdioPermissions): a non-root user
 * reopening /dev/stdout must pass the permission check again. /dev/null is left alone. */
static void stdio_owner(uid_t uid) {
    struct stat null;
    int have_null = stat("/dev/null", &null) == 0;
    for (int fd = 0; fd < 3; fd++) {
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_uid == uid || (S_ISCHR(st.st_mode) && have_null && st.st_rdev == null.st_rdev))
            continue;
        if (fchown(fd, uid, (gid_t)-1) < 0 && errno != EBADF && errno != EPERM && errno != EINVAL && errno != EROFS)
            fail(1, "chown stdio %d: %s", fd, error_text(errno));
    }
}

static void default_signals(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &action, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static int hex_digit(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Install the BPF program the runtime compiled (libseccomp, cached by profile). */
static void load_seccomp(unsigned int flags, const char *hex) {
    size_t size = strlen(hex) / 2;
    if (size == 0 || size % sizeof(struct sock_filter))
        fail(1, "the seccomp program is %zu bytes long", size);
    unsigned char *program = malloc(size);
    if (!program)
        fail(1, "out of memory");
    for (size_t i = 0; i < size; i++) {
        int high = hex_digit(hex[2 * i]), low = hex_digit(hex[2 * i + 1]);
        if (high < 0 || low < 0)
            fail(1, "the seccomp program is malformed");
        program[i] = (unsigned char)(high << 4 | low);
    }
    struct sock_fprog filter = {(unsigned short)(size / sizeof(struct sock_filter)), (struct sock_filter *)program};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &filter) < 0) {
        if (errno == EACCES)
            fail(1, "seccomp filter: cannot be loaded without no_new_privs or CAP_SYS_ADMIN");
        fail(1, "load the seccomp filter: %s", error_text(errno));
    }
    free(program);
}

/* The process */

static const char *check_executable(const char *name, const char *path) {
    struct stat st;
    if (stat(path, &st) < 0)
        fail(127, "exec: \"%s\": stat %s: %s", name, path, error_text(errno));
    if (S_ISDIR(st.st_mode))
        fail(126, "exec: \"%s\": is a directory", name);
    if (!(st.st_mode & 0111))
        fail(126, "exec: \"%s\": permission denied", name);
    return path;
}

/* The executable as Go's exec.LookPath finds it, with the container's PATH. */
static const char *look_path(const char *name, char **env) {
    static char candidate[PATH_MAX];
    if (strchr(name, '/'))
        return check_executable(name, name);
    const char *path = "";
    for (char **e = env; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0)
            path = *e + 5;
    for (const char *start = path;;) {
        const char *end = strchrnul(start, ':');
        int length = (int)(end - start);
        snprintf(candidate, sizeof candidate, "%.*s/%s", length ? length : 1, length ? start : ".", name);
        struct stat st;
        if (stat(candidate, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111))
            return candidate;
        if (!*end)
            break;
        start = end + 1;
    }
    fail(127, "exec: \"%s\": executable file not found in $PATH", name);
}

/* chdir, then execve: `path`, or what look_path finds from the new working directory when NULL. */
static void exec_process(const char *cwd, const char *path, char **argv, char **env) {
    if (chdir(cwd) < 0)
        fail(126, "chdir to cwd (\"%s\") set in config.json failed: %s", cwd, error_text(errno));
    execve(path ? path : look_path(argv[0], env), argv, env);
    fail(errno == ENOENT ? 127 : 126, "exec: \"%s\": %s", argv[0], error_text(errno));
}

static void read_all(int fd, void *buffer, size_t size) {
    size_t done = 0;
    while (done < size) {
        ssize_t n = read(fd, (char *)buffer + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail(1, "reading the process to run: %s", n < 0 ? error_text(errno) : "end of file");
        done += (size_t)n;
    }
}

/* The steps */

struct step {
    const char *name;
    int arguments; /* -1: any number */
};

static const struct step STEPS[] = {
    {"setns", 2},     {"unshare", 1},    {"loopback", 0}, {"fork", 0},      {"setsid", 0},   {"rootfs", 1},
    {"mount", 6},     {"mkdirs", 2},     {"mountpoint", 2}, {"mknod", 7},   {"symlink", 2},  {"console", 1},
    {"bind-console", 0}, {"pivot", 0},   {"readonly", 1}, {"readonly-root", 0}, {"mask", 1},      {"hostname", 1}, {"write", 2},
    {"hand-console", 0}, {"rlimit", 3},  {"seccomp", 2},  {"stdio-owner", 1}, {"bounding", 2}, {"user", 3},
    {"capabilities", 5}, {"no-new-privileges", 0}, {"default-signals", 0}, {"ready", 0}, {"wait-start", 0},
    {"open-fifo", 0}, {"process", -1}, {"look-up", 0}, {"hang-up", 0}, {"exec", 0}, {"stand-by", 0},
};

/* A step of the plan: its name, arguments and their count. */
struct parsed {
    const char *name;
    char **arg;
    int count;
};

static struct parsed steps[MAX_PLAN / 4];
static size_t nsteps;

static void parse_steps(void) {
    nsteps = 0;
    for (size_t i = 0; i < nwords;) {
        const char *name = words[i];
        if (i + 1 >= nwords)
            fail(1, "the plan's step %s has no argument count", name);
        int count = (int)number(words[i + 1]);
        if (count < 0 || i + 2 + (size_t)count > nwords)
            fail(1, "the plan's step %s is cut short", name);
        size_t known = 0;
        while (known < sizeof STEPS / sizeof *STEPS && strcmp(STEPS[known].name, name))
            known++;
        if (known == sizeof STEPS / sizeof *STEPS || (STEPS[known].arguments >= 0 && STEPS[known].arguments != count))
            fail(1, "the plan has an unknown step %s with %d arguments", name, count);
        steps[nsteps++] = (struct parsed){name, &words[i + 2], count};
        i += 2 + (size_t)count;
    }
}

static void run_step(const char *name, char **arg, int count);

/* The process to exec: its cwd, arguments and environment, and the path found (none for a standby's). */
static const char *process_cwd = "/";
static char **process_argv, **process_env;
static const char *process_path;

/* A standby: running as far as `start` can tell, waiting for its process (the header comment). */
static void stand_by(void) {
    errors_to_fifo = 1;
    if (write(exec_fifo, "0", 1) != 1)
        fail(1, "write the exec fifo: %s", error_text(errno));
    uint32_t size;
    read_all(PROCESS_FD, &size, sizeof size);
    if (size == 0 || size >= sizeof plan)
        fail(1, "the process to run is %u bytes long", size);
    /* The create's plan is carried out: its buffer takes the process's own, one "process" step. */
    read_all(PROCESS_FD, plan, size);
    close(PROCESS_FD);
    split_words(size);
    parse_steps();
    if (nsteps != 1 || strcmp(steps[0].name, "process"))
        fail(1, "the process to run is malformed");
    run_step(steps[0].name, steps[0].arg, steps[0].count);
    exec_process(process_cwd, NULL, process_argv, process_env);
}

static void run_step(const char *name, char **arg, int count) {
    char path[PATH_MAX];
    if (!strcmp(name, "unshare")) {
        if (unshare((int)number(arg[0])) < 0)
            fail(1, "unshare namespaces %s: %s", arg[0], error_text(errno));
    } else if (!strcmp(name, "loopback")) {
        loopback_up();
    } else if (!strcmp(name, "setsid")) {
        if (setsid() < 0)
            fail(1, "setsid: %s", error_text(errno));
    } else if (!strcmp(name, "rootfs")) {
        rootfs = arg[0];
    } else if (!strcmp(name, "mount")) { /* source target fstype flags data join */
        step_path(path, sizeof path, arg[1], arg[5]);
        do_mount(optional(arg[0]), path, optional(arg[2]), (unsigned long)number(arg[3]), optional(arg[4]));
    } else if (!strcmp(name, "mkdirs")) {
        step_path(path, sizeof path, arg[0], arg[1]);
        make_dirs(path, 0777);
    } else if (!strcmp(name, "mountpoint")) { /* a file where a bind mount's source is one */
        secure_join(path, sizeof path, arg[0]);
        if (!strcmp(arg[1], "file")) {
            make_parent(path);
            struct stat st;
            int fd;
            if (lstat(path, &st) < 0 && ((fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644)) < 0 || close(fd) < 0))
                fail(1, "create %s: %s", path, error_text(errno));
        } else {
            make_dirs(path, 0777);
        }
    } else if (!strcmp(name, "mknod")) { /* path mode type major minor uid gid */
        secure_join(path, sizeof path, arg[0]);
        make_parent(path);
        mode_t mode = (mode_t)number(arg[1]);
        if (mknod(path, mode | (mode_t)number(arg[2]), makedev(number(arg[3]), number(arg[4]))) < 0 ||
            chmod(path, mode) < 0 || chown(path, (uid_t)number(arg[5]), (gid_t)number(arg[6])) < 0)
            fail(1, "mknod %s: %s", path, error_text(errno));
    } else if (!strcmp(name, "symlink")) {
        secure_join(path, sizeof path, arg[1]);
        struct stat st;
        if (lstat(path, &st) < 0 && symlink(arg[0], path) < 0)
            fail(1, "symlink %s: %s", path, error_text(errno));
    } else if (!strcmp(name, "console")) {
        path_format(path, sizeof path, "%s%s", rootfs, arg[0]);
        open_console(path);
    } else if (!strcmp(name, "bind-console")) { /* the pty slave as /dev/console, as runc does */
        secure_join(path, sizeof path, "/dev/console");
        make_parent(path);
        struct stat st;
        int fd;
        if (lstat(path, &st) < 0 && ((fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644)) < 0 || close(fd) < 0))
            fail(1, "create %s: %s", path, error_text(errno));
        do_mount(console_name, path, "bind", MS_BIND, NULL);
    } else if (!strcmp(name, "pivot")) {
        pivot();
    } else if (!strcmp(name, "readonly")) {
        readonly_path(arg[0]);
    } else if (!strcmp(name, "readonly-root")) {
        do_mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags("/"), NULL);
    } else if (!strcmp(name, "mask")) {
        mask_path(arg[0]);
    } else if (!strcmp(name, "hostname")) {
        if (sethostname(arg[0], strlen(arg[0])) < 0)
            fail(1, "sethostname %s: %s", arg[0], error_text(errno));
    } else if (!strcmp(name, "write")) {
        write_file(arg[0], arg[1]);
    } else if (!strcmp(name, "hand-console")) {
        hand_console();
    } else if (!strcmp(name, "rlimit")) {
        struct rlimit limit = {(rlim_t)number(arg[1]), (rlim_t)number(arg[2])};
        if (setrlimit((int)number(arg[0]), &limit) < 0)
            fail(1, "setrlimit %s: %s", arg[0], error_text(errno));
    } else if (!strcmp(name, "seccomp")) {
        load_seccomp((unsigned int)number(arg[0]), arg[1]);
    } else if (!strcmp(name, "stdio-owner")) {
        stdio_owner((uid_t)number(arg[0]));
    } else if (!strcmp(name, "bounding")) { /* last_cap keep */
        last_cap = (int)number(arg[0]);
        drop_bounding_except(number(arg[1]));
    } else if (!strcmp(name, "user")) {
        set_user((uid_t)number(arg[0]), (gid_t)number(arg[1]), arg[2]);
    } else if (!strcmp(name, "capabilities")) {
        apply_capabilities(number(arg[0]), number(arg[1]), number(arg[2]), number(arg[3]), number(arg[4]));
    } else if (!strcmp(name, "no-new-privileges")) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            fail(1, "set no_new_privs: %s", error_text(errno));
    } else if (!strcmp(name, "default-signals")) {
        default_signals();
    } else if (!strcmp(name, "ready")) {
        send_message("{\"type\": \"ready\"}");
    } else if (!strcmp(name, "wait-start")) {
        /* Blocks until `start` opens the fifo for reading (fifo(7)); the fd was opened O_PATH
         * before pivot_root, so the state directory need not be visible in the container. */
        int fd = open("/proc/self/fd/4", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1)
            fail(1, "write the exec fifo: %s", error_text(errno));
        close(fd);
        close(FIFO_FD);
    } else if (!strcmp(name, "open-fifo")) {
        /* Read-write, as root before the user is set: no peer needed (fifo(7)). */
        exec_fifo = open("/proc/self/fd/4", O_RDWR | O_CLOEXEC);
        if (exec_fifo < 0)
            fail(1, "open the exec fifo: %s", error_text(errno));
        close(FIFO_FD);
    } else if (!strcmp(name, "process")) { /* cwd argc args... env... */
        if (count < 3 || number(arg[1]) == 0 || (size_t)count < 2 + number(arg[1]))
            fail(1, "the plan's process is malformed");
        size_t argc = number(arg[1]), nenv = (size_t)count - 2 - argc;
        process_cwd = arg[0];
        process_argv = calloc(argc + 1, sizeof *process_argv);
        process_env = calloc(nenv + 1, sizeof *process_env);
        if (!process_argv || !process_env)
            fail(1, "out of memory");
        memcpy(process_argv, arg + 2, argc * sizeof *arg);
        memcpy(process_env, arg + 2 + argc, nenv * sizeof *arg);
    } else if (!strcmp(name, "look-up")) {
        process_path = look_path(process_argv[0], process_env);
    } else if (!strcmp(name, "hang-up")) {
        /* The runtime stops reading after "ready": a later failure goes to the process's stderr. */
        close(channel);
        channel = -1;
    } else if (!strcmp(name, "exec")) {
        exec_process(process_cwd, process_path, process_argv, process_env);
    } else if (!strcmp(name, "stand-by")) {
        stand_by();
    }
}

static void close_others(void) {
    if (syscall(SYS_close_range, FIRST_OTHER_FD, ~0U, 0) == 0)
        return;
    struct rlimit limit;
    getrlimit(RLIMIT_NOFILE, &limit);
    for (rlim_t fd = FIRST_OTHER_FD; fd < limit.rlim_cur; fd++)
        close((int)fd);
}

int main(int argc, char **argv) {
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "webengine-init is started by webengine's runtime, with its plan on fd 3\n");
        return 2;
    }
    close_others();
    read_plan();
    parse_steps();
    /* Every namespace to join is opened before any is joined: once in a container's mount
     * namespace, /proc/<host pid>/ns/... no longer resolves. */
    static int namespace_fd[MAX_PLAN / 4];
    for (size_t i = 0; i < nsteps; i++)
        if (!strcmp(steps[i].name, "setns") && (namespace_fd[i] = open(steps[i].arg[0], O_RDONLY | O_CLOEXEC)) < 0)
            fail(1, "open namespace %s: %s", steps[i].arg[0], error_text(errno));
    for (size_t i = 0; i < nsteps; i++) {
        if (!strcmp(steps[i].name, "setns")) {
            if (setns(namespace_fd[i], (int)number(steps[i].arg[1])) < 0)
                fail(1, "join namespace %s: %s", steps[i].arg[0], error_text(errno));
            close(namespace_fd[i]);
            continue;
        }
        if (!strcmp(steps[i].name, "fork")) {
            /* After unshare(CLONE_NEWPID) only children enter the new pid namespace. */
            pid_t pid = fork();
            if (pid < 0)
                fail(1, "fork the container's init: %s", error_text(errno));
            if (pid > 0) {
                char message[64];
                snprintf(message, sizeof message, "{\"type\": \"pid\", \"pid\": %d}", pid);
                send_message(message);
                _exit(0);
            }
            continue;
        }
        run_step(steps[i].name, steps[i].arg, steps[i].count);
    }
    fail(1, "the plan ended without exec or stand-by");
}
