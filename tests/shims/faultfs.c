/* Fault injection for pgward's own file-system calls, loaded with LD_PRELOAD
 * by the fault walks (tests/integration/test_fault_walks.cpp).
 *
 * It counts the calls pgward's durability depends on -- open/openat/creat,
 * write/pwrite, fsync/fdatasync, close, rename/renameat/renameat2,
 * unlink/unlinkat/remove, ftruncate, mkdir/mkdirat -- when they touch a path
 * under PGWARD_FAULT_ROOT (sockets, pipes, the terminal and system files pass
 * through uncounted), in the process that loaded it only: it removes
 * LD_PRELOAD from the environment at load, so pg_dump and the other children
 * never see it, and a forked child stops counting.
 *
 *   PGWARD_FAULT_ROOT    the directory whose files are counted (required)
 *   PGWARD_FAULT_AT      N: act at the Nth counted call (absent: count only)
 *   PGWARD_FAULT_ACTION  kill (SIGKILL) or EIO, ENOSPC, EDQUOT, EACCES
 *   PGWARD_FAULT_MODE    once (only call N fails) or persist (N and after)
 *   PGWARD_FAULT_TRACE   a file that gets one line per counted call:
 *                        "N call path[ -> path2][ FAULT]"; its line count is
 *                        the operation's call count (the dry run).
 *
 * A failed close still releases the descriptor, as Linux's does; a failed
 * call otherwise does nothing but set errno.
 *
 * Linked into a test executable instead (tests/faultunit), the same wrappers
 * interpose pgward's calls in-process, and faultfs_arm() sets rules directly:
 * each rule counts its own calls (all of the above, or one named call; `read`
 * is counted only by a rule that names it, so the walks' counts never include
 * it) and fails its Nth with an errno. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "faultfs.h"

struct rule {
    char call[32]; /* "" = every counted call but read */
    long at;
    int err; /* 0 = kill */
    int persist;
    long seen;
};

#define MAX_RULES 8
static struct rule rules[MAX_RULES];
static int rule_count;
static char root[4096];
static size_t root_len;
static const char* trace_path;
static pid_t owner_pid;
static long calls;

static void set_root(const char* r) {
    root[0] = '\0';
    root_len = 0;
    if (r != NULL && strlen(r) < sizeof root) {
        strcpy(root, r);
        root_len = strlen(root);
        while (root_len > 1 && root[root_len - 1] == '/') {
            root[--root_len] = '\0';
        }
    }
}

__attribute__((constructor)) static void faultfs_init(void) {
    set_root(getenv("PGWARD_FAULT_ROOT"));
    const char* at = getenv("PGWARD_FAULT_AT");
    if (at != NULL) {
        struct rule* r = &rules[rule_count++];
        memset(r, 0, sizeof *r);
        r->at = strtol(at, NULL, 10);
        const char* action = getenv("PGWARD_FAULT_ACTION");
        if (action == NULL || strcmp(action, "kill") == 0) {
            r->err = 0;
        } else if (strcmp(action, "ENOSPC") == 0) {
            r->err = ENOSPC;
        } else if (strcmp(action, "EDQUOT") == 0) {
            r->err = EDQUOT;
        } else if (strcmp(action, "EACCES") == 0) {
            r->err = EACCES;
        } else {
            r->err = EIO;
        }
        const char* mode = getenv("PGWARD_FAULT_MODE");
        r->persist = mode != NULL && strcmp(mode, "persist") == 0;
    }
    trace_path = getenv("PGWARD_FAULT_TRACE");
    if (trace_path != NULL) {
        trace_path = strdup(trace_path);
    }
    owner_pid = (pid_t)syscall(SYS_getpid);
    unsetenv("LD_PRELOAD");
}

int faultfs_arm(const char* dir, const char* call, long at, int err, int persist) {
    if (rule_count == MAX_RULES || strlen(call) >= sizeof rules[0].call) {
        return -1;
    }
    set_root(dir);
    owner_pid = (pid_t)syscall(SYS_getpid);
    struct rule* r = &rules[rule_count];
    memset(r, 0, sizeof *r);
    strcpy(r->call, call);
    r->at = at;
    r->err = err;
    r->persist = persist;
    return rule_count++;
}

long faultfs_seen(int rule) {
    return rule >= 0 && rule < rule_count ? rules[rule].seen : -1;
}

void faultfs_disarm(void) {
    rule_count = 0;
    set_root(NULL);
    calls = 0;
}

static int under_root(const char* path) {
    if (root_len == 0 || path == NULL) {
        return 0;
    }
    return strncmp(path, root, root_len) == 0 && (path[root_len] == '/' || path[root_len] == '\0');
}

/* The path an fd names, when it is a regular file or a directory. */
static int fd_path(int fd, char* out, size_t size) {
    struct stat st;
    if (syscall(SYS_fstat, fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
        return 0;
    }
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = syscall(SYS_readlink, link, out, size - 1);
    if (n <= 0) {
        return 0;
    }
    out[n] = '\0';
    return 1;
}

static void trace(long n, const char* call, const char* path, const char* path2, int faulted) {
    if (trace_path == NULL) {
        return;
    }
    char line[9000];
    int len =
        snprintf(line, sizeof line, "%ld %s %s%s%s%s\n", n, call, path, path2 != NULL ? " -> " : "",
                 path2 != NULL ? path2 : "", faulted ? " FAULT" : "");
    int fd = (int)syscall(SYS_openat, AT_FDCWD, trace_path,
                          O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (len > (int)sizeof line - 1) {
            len = (int)sizeof line - 1;
        }
        (void)syscall(SYS_write, fd, line, (size_t)len);
        syscall(SYS_close, fd);
    }
}

static int reads_counted(void) {
    for (int i = 0; i < rule_count; ++i) {
        if (strcmp(rules[i].call, "read") == 0) {
            return 1;
        }
    }
    return 0;
}

/* Counts one call on `path`; returns the errno to fail it with, or 0 to let
 * it run. Kills the process when that is the action. */
static int count_call(const char* call, const char* path, const char* path2) {
    if ((pid_t)syscall(SYS_getpid) != owner_pid) {
        return 0;
    }
    if (!under_root(path) && !under_root(path2)) {
        return 0;
    }
    long n = __atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST);
    int hit = 0;
    int err = 0;
    for (int i = 0; i < rule_count; ++i) {
        struct rule* r = &rules[i];
        int is_read = strcmp(call, "read") == 0;
        if (r->call[0] == '\0' ? is_read : strcmp(r->call, call) != 0) {
            continue;
        }
        long seen = __atomic_add_fetch(&r->seen, 1, __ATOMIC_SEQ_CST);
        if (!hit && r->at > 0 && (seen == r->at || (r->persist && seen > r->at))) {
            hit = 1;
            err = r->err;
        }
    }
    trace(n, call, path != NULL ? path : "", path2, hit);
    if (!hit) {
        return 0;
    }
    if (err == 0) {
        syscall(SYS_kill, owner_pid, SIGKILL);
        for (;;) {
            pause();
        }
    }
    return err;
}

static int count_fd(const char* call, int fd) {
    char path[4096];
    if (root_len == 0 || !fd_path(fd, path, sizeof path)) {
        return 0;
    }
    return count_call(call, path, NULL);
}

/* A path relative to dirfd (or the cwd), made absolute for the root check. */
static const char* at_path(int dirfd, const char* path, char* buffer, size_t size) {
    if (path == NULL || path[0] == '/') {
        return path;
    }
    char base[4096];
    if (dirfd == AT_FDCWD) {
        if (getcwd(base, sizeof base) == NULL) {
            return path;
        }
    } else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
        ssize_t n = syscall(SYS_readlink, link, base, sizeof base - 1);
        if (n <= 0) {
            return path;
        }
        base[n] = '\0';
    }
    snprintf(buffer, size, "%s/%s", base, path);
    return buffer;
}

/* The next definition of `name` (libc's), looked up once. */
#define REAL(name)                                                \
    static __typeof__(&name) real_##name;                         \
    if (real_##name == NULL) {                                    \
        real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name); \
    }

static int fail(int err) {
    errno = err;
    return -1;
}

static mode_t open_mode(int flags, va_list ap) {
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

typedef int (*openat_fn)(int, const char*, int, ...);
static int do_openat(const char* call, const char* sym, int dirfd, const char* path, int flags,
                     mode_t mode) {
    char buffer[8192];
    int err = count_call(call, at_path(dirfd, path, buffer, sizeof buffer), NULL);
    if (err != 0) {
        return fail(err);
    }
    openat_fn real = (openat_fn)dlsym(RTLD_NEXT, sym);
    return real(dirfd, path, flags, mode);
}

int open(const char* path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = open_mode(flags, ap);
    va_end(ap);
    return do_openat("open", "openat", AT_FDCWD, path, flags, mode);
}
int open64(const char* path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = open_mode(flags, ap);
    va_end(ap);
    return do_openat("open", "openat64", AT_FDCWD, path, flags, mode);
}
int openat(int dirfd, const char* path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = open_mode(flags, ap);
    va_end(ap);
    return do_openat("openat", "openat", dirfd, path, flags, mode);
}
int openat64(int dirfd, const char* path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = open_mode(flags, ap);
    va_end(ap);
    return do_openat("openat", "openat64", dirfd, path, flags, mode);
}
int creat(const char* path, mode_t mode) {
    return do_openat("creat", "openat", AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

ssize_t write(int fd, const void* data, size_t size) {
    REAL(write);
    int err = count_fd("write", fd);
    return err != 0 ? fail(err) : real_write(fd, data, size);
}
ssize_t pwrite(int fd, const void* data, size_t size, off_t offset) {
    REAL(pwrite);
    int err = count_fd("pwrite", fd);
    return err != 0 ? fail(err) : real_pwrite(fd, data, size, offset);
}
ssize_t pwrite64(int fd, const void* data, size_t size, off_t offset) {
    REAL(pwrite64);
    int err = count_fd("pwrite", fd);
    return err != 0 ? fail(err) : real_pwrite64(fd, data, size, offset);
}
ssize_t read(int fd, void* data, size_t size) {
    REAL(read);
    int err = reads_counted() ? count_fd("read", fd) : 0;
    return err != 0 ? fail(err) : real_read(fd, data, size);
}
int fsync(int fd) {
    REAL(fsync);
    int err = count_fd("fsync", fd);
    return err != 0 ? fail(err) : real_fsync(fd);
}
int fdatasync(int fd) {
    REAL(fdatasync);
    int err = count_fd("fdatasync", fd);
    return err != 0 ? fail(err) : real_fdatasync(fd);
}
int close(int fd) {
    REAL(close);
    int err = count_fd("close", fd);
    int rc = real_close(fd);
    return err != 0 ? fail(err) : rc;
}
int ftruncate(int fd, off_t length) {
    REAL(ftruncate);
    int err = count_fd("ftruncate", fd);
    return err != 0 ? fail(err) : real_ftruncate(fd, length);
}
int ftruncate64(int fd, off_t length) {
    REAL(ftruncate64);
    int err = count_fd("ftruncate", fd);
    return err != 0 ? fail(err) : real_ftruncate64(fd, length);
}

int rename(const char* from, const char* to) {
    REAL(rename);
    char b1[8192], b2[8192];
    int err = count_call("rename", at_path(AT_FDCWD, from, b1, sizeof b1),
                         at_path(AT_FDCWD, to, b2, sizeof b2));
    return err != 0 ? fail(err) : real_rename(from, to);
}
int renameat(int olddir, const char* from, int newdir, const char* to) {
    REAL(renameat);
    char b1[8192], b2[8192];
    int err = count_call("renameat", at_path(olddir, from, b1, sizeof b1),
                         at_path(newdir, to, b2, sizeof b2));
    return err != 0 ? fail(err) : real_renameat(olddir, from, newdir, to);
}
int renameat2(int olddir, const char* from, int newdir, const char* to, unsigned int flags) {
    REAL(renameat2);
    char b1[8192], b2[8192];
    int err = count_call("renameat2", at_path(olddir, from, b1, sizeof b1),
                         at_path(newdir, to, b2, sizeof b2));
    return err != 0 ? fail(err) : real_renameat2(olddir, from, newdir, to, flags);
}
int link(const char* from, const char* to) {
    REAL(link);
    char b1[8192], b2[8192];
    int err = count_call("link", at_path(AT_FDCWD, from, b1, sizeof b1),
                         at_path(AT_FDCWD, to, b2, sizeof b2));
    return err != 0 ? fail(err) : real_link(from, to);
}
int unlink(const char* path) {
    REAL(unlink);
    char b[8192];
    int err = count_call("unlink", at_path(AT_FDCWD, path, b, sizeof b), NULL);
    return err != 0 ? fail(err) : real_unlink(path);
}
int unlinkat(int dirfd, const char* path, int flags) {
    REAL(unlinkat);
    char b[8192];
    int err = count_call("unlinkat", at_path(dirfd, path, b, sizeof b), NULL);
    return err != 0 ? fail(err) : real_unlinkat(dirfd, path, flags);
}
int remove(const char* path) {
    REAL(remove);
    char b[8192];
    int err = count_call("remove", at_path(AT_FDCWD, path, b, sizeof b), NULL);
    return err != 0 ? fail(err) : real_remove(path);
}
int mkdir(const char* path, mode_t mode) {
    REAL(mkdir);
    char b[8192];
    int err = count_call("mkdir", at_path(AT_FDCWD, path, b, sizeof b), NULL);
    return err != 0 ? fail(err) : real_mkdir(path, mode);
}
int mkdirat(int dirfd, const char* path, mode_t mode) {
    REAL(mkdirat);
    char b[8192];
    int err = count_call("mkdirat", at_path(dirfd, path, b, sizeof b), NULL);
    return err != 0 ? fail(err) : real_mkdirat(dirfd, path, mode);
}
