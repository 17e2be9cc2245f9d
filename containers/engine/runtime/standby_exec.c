/*
 * The last step of a standby container's init: wait for the process to run, then exec it.
 *
 *     standby-exec FIFO_FD CHANNEL_FD
 *
 * The native runtime's init (init.py) builds the container with a stand-in process and does
 * every step of runc's finalisation that the stand-in decides (rlimits, user, capabilities,
 * no_new_privs, seccomp, signals), then execs this program in its place. A forked Python
 * interpreter is then no longer what waits, so the final exec does not tear down its address
 * space, and what `start` waits for is a few system calls (containers/engine/standby.py).
 *
 * Hand-written: no runtime or library offers "exec a process given later" (OCI runtimes fix the
 * process at create). It does no privileged step; those are done before it runs.
 *
 * The protocol, the runtime's `start` against this program (both descriptors opened read-write
 * by init, as root: a fifo so opened needs no peer, fifo(7)):
 *   1. one byte "0" into exec.fifo (FIFO_FD), which `start` reads: the container is started
 *      (the exec fifo of runc);
 *   2. `start` writes to process.fifo (CHANNEL_FD) a 4-byte native length, then NUL-terminated
 *      strings: cwd, argc, the arguments, the environment;
 *   3. chdir, the executable looked up as Go's exec.LookPath does, execve. exec.fifo's last
 *      writer closes on exec, so `start` reads its end (success); an error goes back through it
 *      as {"message": ..., "code": N}, worded as Docker words it, and this program exits with N.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_MESSAGE (4 << 20)

static int fifo = -1;

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
    char message[4096], escaped[8192], line[8400];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    json_string(escaped, sizeof escaped, message);
    int n = snprintf(line, sizeof line, "{\"message\": \"%s\", \"code\": %d}", escaped, code);
    if (fifo >= 0 && write(fifo, line, (size_t)n) < 0) {
        /* nobody to tell: the exit code says it */
    }
    _exit(code);
}

/* strerror as Go prints it: lower case ("no such file or directory"). */
static const char *go_error(int err) {
    static char text[256];
    snprintf(text, sizeof text, "%s", strerror(err));
    for (char *p = text; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return text;
}

static void read_all(int fd, void *buffer, size_t size) {
    size_t done = 0;
    while (done < size) {
        ssize_t n = read(fd, (char *)buffer + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail(1, "reading the process to run: %s", n < 0 ? go_error(errno) : "end of file");
        done += (size_t)n;
    }
}

static const char *check_executable(const char *name, const char *path) {
    struct stat st;
    if (stat(path, &st) < 0)
        fail(127, "exec: \"%s\": stat %s: %s", name, path, go_error(errno));
    if (S_ISDIR(st.st_mode))
        fail(126, "exec: \"%s\": is a directory", name);
    if (!(st.st_mode & 0111))
        fail(126, "exec: \"%s\": permission denied", name);
    return path;
}

static const char *look_path(const char *name, char **env) {
    static char candidate[8192];
    if (strchr(name, '/'))
        return check_executable(name, name);
    const char *path = "";
    for (char **e = env; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0)
            path = *e + 5;
    for (const char *start = path;; ) {
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

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: standby-exec FIFO_FD CHANNEL_FD\n");
        return 2;
    }
    fifo = atoi(argv[1]);
    int channel = atoi(argv[2]);
    if (fcntl(fifo, F_SETFD, FD_CLOEXEC) < 0 || fcntl(channel, F_SETFD, FD_CLOEXEC) < 0) {
        perror("standby-exec: FIFO_FD and CHANNEL_FD must be open");
        return 2;
    }
    if (write(fifo, "0", 1) != 1)
        fail(1, "write the exec fifo: %s", go_error(errno));

    uint32_t size;
    read_all(channel, &size, sizeof size);
    if (size == 0 || size > MAX_MESSAGE)
        fail(1, "the process to run is %u bytes long", size);
    char *message = malloc((size_t)size + 1);
    if (!message)
        fail(1, "out of memory");
    read_all(channel, message, size);
    message[size] = '\0';
    close(channel);

    /* The strings, each NUL-terminated: split in place into cwd, argc, args..., env... */
    size_t count = 0;
    for (uint32_t i = 0; i < size; i++)
        count += message[i] == '\0';
    char **fields = calloc(count + 2, sizeof *fields);
    if (!fields || count < 3 || message[size - 1] != '\0')
        fail(1, "the process to run is malformed");
    char *p = message;
    for (size_t i = 0; i < count; i++, p += strlen(p) + 1)
        fields[i] = p;
    const char *cwd = fields[0];
    size_t nargs = strtoul(fields[1], NULL, 10);
    if (nargs == 0 || 2 + nargs > count)
        fail(1, "the process to run is malformed");
    /* argv is fields[2 .. 2+nargs), NULL-terminated by moving the environment one slot up. */
    memmove(&fields[3 + nargs], &fields[2 + nargs], (count - 2 - nargs) * sizeof *fields);
    fields[2 + nargs] = NULL;
    fields[count + 1] = NULL;
    char **argv_out = &fields[2], **envp_out = &fields[3 + nargs];

    if (chdir(cwd) < 0)
        fail(126, "chdir to cwd (\"%s\") set in config.json failed: %s", cwd, go_error(errno));
    const char *path = look_path(argv_out[0], envp_out);
    execve(path, argv_out, envp_out);
    fail(errno == ENOENT ? 127 : 126, "exec: \"%s\": %s", argv_out[0], go_error(errno));
}
