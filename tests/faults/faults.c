/* faults.c: an LD_PRELOAD interposer that fails one chosen call of the C library's file
 * functions, for tests/storage_faults.rs. It wraps the calls by which Rust's std reaches the
 * file system (open64, write, fsync, rename, close, ...) in groups, counts the calls of each
 * group while armed, and makes the N-th call of one group fail with a chosen errno, as a full
 * disk (ENOSPC) or a failing device (EIO) would. The standard streams (fds 0-2) are left alone,
 * so a program can still report what happened.
 *
 * Environment, read once at load:
 *   A8F_FAIL=<group>:<n>:<errno>  fail the n-th call (from 1) of <group> with <errno>;
 *   A8F_ARM=1                     count from the start (else the program calls a8f_arm(1));
 *   A8F_COUNTS=<path>             at exit, write "<group> <calls>" lines there.
 * A failed close still closes the descriptor, as Linux's close does. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum group { G_OPEN, G_READ, G_WRITE, G_FSYNC, G_CHMOD, G_RENAME, G_CLOSE, G_UNLINK, G_COUNT };
static const char *const GROUP_NAMES[G_COUNT] = {"open",  "read",   "write", "fsync",
                                                 "chmod", "rename", "close", "unlink"};

static atomic_int armed;
static atomic_long calls[G_COUNT];
static int fail_group = -1, fail_errno;
static long fail_at;

__attribute__((constructor)) static void a8f_init(void) {
    const char *arm = getenv("A8F_ARM");
    atomic_store(&armed, arm && strcmp(arm, "1") == 0);
    const char *spec = getenv("A8F_FAIL");
    if (!spec) return;
    char name[32];
    if (sscanf(spec, "%31[a-z]:%ld:%d", name, &fail_at, &fail_errno) != 3) {
        fprintf(stderr, "faults.c: A8F_FAIL=%s is not <group>:<n>:<errno>\n", spec);
        abort();
    }
    for (int g = 0; g < G_COUNT; g++)
        if (strcmp(name, GROUP_NAMES[g]) == 0) fail_group = g;
    if (fail_group < 0) {
        fprintf(stderr, "faults.c: unknown group %s\n", name);
        abort();
    }
}

__attribute__((destructor)) static void a8f_report(void) {
    atomic_store(&armed, 0);
    const char *path = getenv("A8F_COUNTS");
    if (!path) return;
    FILE *f = fopen(path, "w");
    if (!f) return;
    for (int g = 0; g < G_COUNT; g++) fprintf(f, "%s %ld\n", GROUP_NAMES[g], atomic_load(&calls[g]));
    fclose(f);
}

/* Starts (1) or stops (0) counting and failing. */
void a8f_arm(int on) { atomic_store(&armed, on); }

/* Counts a call of group g; 1 when this is the call to fail (errno is then set). */
static int fails(enum group g) {
    if (!atomic_load(&armed)) return 0;
    long n = atomic_fetch_add(&calls[g], 1) + 1;
    if ((int)g != fail_group || n != fail_at) return 0;
    errno = fail_errno;
    return 1;
}

#define REAL(ret, name, ...)                                                                   \
    static ret (*real_##name)(__VA_ARGS__);                                                    \
    if (!real_##name) real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name)

/* open's mode argument exists only when the flags create a file. */
#define MODE_ARG(flags)                                                                        \
    mode_t mode = 0;                                                                           \
    if ((flags) & (O_CREAT | O_TMPFILE)) {                                                     \
        va_list ap;                                                                            \
        va_start(ap, flags);                                                                   \
        mode = va_arg(ap, mode_t);                                                             \
        va_end(ap);                                                                            \
    }

int open(const char *path, int flags, ...) {
    MODE_ARG(flags);
    REAL(int, open, const char *, int, ...);
    return fails(G_OPEN) ? -1 : real_open(path, flags, mode);
}
int open64(const char *path, int flags, ...) {
    MODE_ARG(flags);
    REAL(int, open64, const char *, int, ...);
    return fails(G_OPEN) ? -1 : real_open64(path, flags, mode);
}
int openat(int dir, const char *path, int flags, ...) {
    MODE_ARG(flags);
    REAL(int, openat, int, const char *, int, ...);
    return fails(G_OPEN) ? -1 : real_openat(dir, path, flags, mode);
}
int openat64(int dir, const char *path, int flags, ...) {
    MODE_ARG(flags);
    REAL(int, openat64, int, const char *, int, ...);
    return fails(G_OPEN) ? -1 : real_openat64(dir, path, flags, mode);
}

ssize_t read(int fd, void *buf, size_t n) {
    REAL(ssize_t, read, int, void *, size_t);
    return fd > 2 && fails(G_READ) ? -1 : real_read(fd, buf, n);
}
ssize_t pread64(int fd, void *buf, size_t n, off_t at) {
    REAL(ssize_t, pread64, int, void *, size_t, off_t);
    return fails(G_READ) ? -1 : real_pread64(fd, buf, n, at);
}
ssize_t readv(int fd, const struct iovec *iov, int count) {
    REAL(ssize_t, readv, int, const struct iovec *, int);
    return fd > 2 && fails(G_READ) ? -1 : real_readv(fd, iov, count);
}

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(ssize_t, write, int, const void *, size_t);
    return fd > 2 && fails(G_WRITE) ? -1 : real_write(fd, buf, n);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t at) {
    REAL(ssize_t, pwrite64, int, const void *, size_t, off_t);
    return fails(G_WRITE) ? -1 : real_pwrite64(fd, buf, n, at);
}
ssize_t writev(int fd, const struct iovec *iov, int count) {
    REAL(ssize_t, writev, int, const struct iovec *, int);
    return fd > 2 && fails(G_WRITE) ? -1 : real_writev(fd, iov, count);
}

int fsync(int fd) {
    REAL(int, fsync, int);
    return fails(G_FSYNC) ? -1 : real_fsync(fd);
}
int fdatasync(int fd) {
    REAL(int, fdatasync, int);
    return fails(G_FSYNC) ? -1 : real_fdatasync(fd);
}

int chmod(const char *path, mode_t mode) {
    REAL(int, chmod, const char *, mode_t);
    return fails(G_CHMOD) ? -1 : real_chmod(path, mode);
}
int fchmod(int fd, mode_t mode) {
    REAL(int, fchmod, int, mode_t);
    return fails(G_CHMOD) ? -1 : real_fchmod(fd, mode);
}

int rename(const char *from, const char *to) {
    REAL(int, rename, const char *, const char *);
    return fails(G_RENAME) ? -1 : real_rename(from, to);
}
int renameat(int fd1, const char *from, int fd2, const char *to) {
    REAL(int, renameat, int, const char *, int, const char *);
    return fails(G_RENAME) ? -1 : real_renameat(fd1, from, fd2, to);
}
int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned flags) {
    REAL(int, renameat2, int, const char *, int, const char *, unsigned);
    return fails(G_RENAME) ? -1 : real_renameat2(fd1, from, fd2, to, flags);
}

int close(int fd) {
    REAL(int, close, int);
    if (fd <= 2 || !fails(G_CLOSE)) return real_close(fd);
    int e = errno;
    real_close(fd);
    errno = e;
    return -1;
}

int unlink(const char *path) {
    REAL(int, unlink, const char *);
    return fails(G_UNLINK) ? -1 : real_unlink(path);
}
int unlinkat(int dir, const char *path, int flags) {
    REAL(int, unlinkat, int, const char *, int);
    return fails(G_UNLINK) ? -1 : real_unlinkat(dir, path, flags);
}
