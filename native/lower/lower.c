/*
 * cryptmount's lower-directory I/O: every system call relative to a
 * directory descriptor, never following a symlink, never blocking on a FIFO.
 *
 * Whoever can write the lower directory is hostile: an entry may turn into a
 * symlink or a FIFO between two calls. Path-based calls would follow the
 * symlink out of the lower directory or hang opening the FIFO. So, as
 * libfuse's passthrough_ll and gocryptfs do, the filesystem holds O_PATH
 * descriptors for directories and every call here takes (directory, name):
 * *at() calls with O_NOFOLLOW / AT_SYMLINK_NOFOLLOW, opens with O_NONBLOCK
 * followed by a type check, and path-only calls (chmod, xattrs) made on
 * "/proc/self/fd/N" of an O_PATH descriptor that was itself opened without
 * following a symlink, so they reach that inode and nothing else.
 *
 * Every operation is one C function of a request (execute() below) that
 * makes the system calls and stores 0 or an errno plus its out values. JS
 * calls it either inline (exports.sync.*: returns the value, or an FsError
 * object instead of throwing) or on the libuv threadpool (exports.async.*:
 * returns a Promise). Argument decoding (parse) and turning results into JS
 * values (deliver) are shared by both, so no operation is written twice.
 *
 * Contract with JS: src/fs/lower/binding.ts (LOWER_VERSION must match).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <node_api.h>
#include <stdbool.h>
#include <uchar.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#define LOWER_VERSION 2

/* Room for the longest accepted string plus one UTF-8 sequence: V8 stops
 * copying before a character that does not fit, so a string longer than the
 * limit always fills the buffer past it and is refused, never silently cut. */
#define STRING_SLACK 5
#define NAME_BUF (NAME_MAX + STRING_SLACK)
#define TEXT_BUF (PATH_MAX + STRING_SLACK)
#define MAX_ARGS 8

static const char NOT_REGULAR[] = "lower entry is not a regular file";

/* name, JS name, argument signature (see parse()). */
#define LOWER_OPS(X)                                                           \
  X(OPEN_ROOT, "openRoot", "t")                                                \
  X(OPEN_DIR, "openDir", "dn")                                                 \
  X(STAT, "stat", "de")                                                        \
  X(FSTAT, "fstat", "d")                                                       \
  X(LIST, "list", "d")                                                         \
  X(OPEN_FILE, "openFile", "dnii")                                             \
  X(CLOSE, "close", "d")                                                       \
  X(PREAD, "pread", "dbiii")                                                   \
  X(PWRITE, "pwrite", "dbiii")                                                 \
  X(FTRUNCATE, "ftruncate", "di")                                              \
  X(FALLOCATE, "fallocate", "diii")                                            \
  X(LSEEK, "lseek", "dii")                                                     \
  X(FSYNC, "fsync", "df")                                                      \
  X(MKDIR, "mkdir", "dni")                                                     \
  X(UNLINK, "unlink", "dn")                                                    \
  X(RMDIR, "rmdir", "dn")                                                      \
  X(RENAME, "rename", "dndni")                                                 \
  X(LINK, "link", "dndn")                                                      \
  X(SYMLINK, "symlink", "tdn")                                                 \
  X(READLINK, "readlink", "dn")                                                \
  X(MKNOD, "mknod", "dnii")                                                    \
  X(CHMOD, "chmod", "dei")                                                     \
  X(CHOWN, "chown", "deii")                                                    \
  X(UTIMENS, "utimens", "deiiii")                                              \
  X(GETXATTR, "getxattr", "dea")                                               \
  X(SETXATTR, "setxattr", "deabi")                                             \
  X(LISTXATTR, "listxattr", "de")                                              \
  X(REMOVEXATTR, "removexattr", "dea")                                         \
  X(READ_SMALL_FILE, "readSmallFile", "dni")                                   \
  X(CREATE_FILE, "createFile", "dnbiff")                                       \
  X(FSYNC_DIR, "fsyncDir", "d")                                                \
  X(STATFS, "statfs", "d")

enum op {
#define AS_ENUM(id, js, sig) OP_##id,
  LOWER_OPS(AS_ENUM)
#undef AS_ENUM
      OP_COUNT
};

static const struct {
  const char *js_name;
  const char *signature;
} ops[OP_COUNT] = {
#define AS_ENTRY(id, js, sig) {js, sig},
    LOWER_OPS(AS_ENTRY)
#undef AS_ENTRY
};

/* The JS function's data pointer: the operation, and whether it is queued. */
#define ASYNC_TAG 0x100

typedef struct request {
  int op;
  int fd, fd2;
  bool self;       /* the name was "": the descriptor itself */
  int64_t num[4];  /* integer and boolean arguments, in order */
  char *buf;       /* Buffer argument (not owned) */
  size_t buf_len;

  int err;             /* 0, or the errno of the failure */
  const char *message; /* for JS, when the errno alone would mislead */
  bool absent;         /* getxattr: no such attribute */
  int64_t value;       /* descriptor, byte count, string length */
  struct stat st;
  struct statfs sfs;
  char *out; /* malloc'd: names (NUL-separated), xattr value, file content */
  size_t out_len;
  size_t out_count; /* list: how many names */

  napi_async_work work;
  napi_deferred deferred;
  napi_ref buf_ref; /* keeps the Buffer alive while the threadpool uses it */

  /* Strings last: request_init() leaves them uninitialised. */
  char name[NAME_BUF];
  char name2[NAME_BUF];
  char text[TEXT_BUF]; /* path, symlink target or attribute name; readlink's result */
} request_t;

static void request_init(request_t *r, int op) {
  memset(r, 0, offsetof(request_t, name));
  r->op = op;
  r->name[0] = r->name2[0] = r->text[0] = '\0';
}

/* ---- system calls ------------------------------------------------------------ */

static int fail(request_t *r, int err, const char *message) {
  r->message = message;
  return err;
}

/* Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF):
 * V8 would turn anything else into U+FFFD, and two lower names would alias. */
static bool valid_utf8(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

/* Closes a descriptor after a failed call and returns that call's errno. */
static int close_failed(int fd) {
  int err = errno;
  close(fd);
  return err;
}

/*
 * Opens a lower entry for I/O: O_NOFOLLOW refuses a symlink (ELOOP),
 * O_NONBLOCK makes a FIFO's open return at once instead of waiting for a
 * peer, and the fstat that follows refuses anything but a regular file. The
 * descriptor then blocks again, as a regular file's always does.
 */
static int open_regular(request_t *r, const char *name, int flags, mode_t mode, struct stat *st) {
  int fd = openat(r->fd, name, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, mode);
  if (fd < 0) return -errno;
  if (fstat(fd, st) < 0) return -close_failed(fd);
  if (!S_ISREG(st->st_mode)) {
    close(fd);
    r->message = NOT_REGULAR;
    return -EIO;
  }
  /* F_SETFL changes only O_APPEND, O_DIRECT, O_NOATIME, O_NONBLOCK and
   * O_ASYNC, so the caller's flags minus O_NONBLOCK restore what they asked
   * for without an F_GETFL (this is the hot path of every FUSE open). */
  if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags & ~(O_NONBLOCK | O_ASYNC)) < 0)
    return -close_failed(fd);
  return fd;
}

/*
 * An O_PATH descriptor on the entry itself (never a symlink's target; ""
 * is the directory descriptor), its type, and its /proc name: chmod and the
 * xattr calls have no descriptor form that works on O_PATH, and the /proc
 * link leads to exactly this inode without opening it (so no FIFO or device
 * is ever opened).
 */
typedef struct pinned {
  int fd;
  bool owned;
  struct stat st;
  char proc[40];
} pinned_t;

static int pin(request_t *r, pinned_t *p) {
  p->owned = !r->self;
  p->fd = r->self ? r->fd : openat(r->fd, r->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (p->fd < 0) return errno;
  if (fstat(p->fd, &p->st) < 0) {
    int err = errno;
    if (p->owned) close(p->fd);
    return err;
  }
  snprintf(p->proc, sizeof p->proc, "/proc/self/fd/%d", p->fd);
  return 0;
}

static void unpin(pinned_t *p) {
  if (p->owned) close(p->fd);
}

/* Pins an entry that xattr calls may touch: like Linux for user.*, only
 * regular files and directories (and no symlink is ever followed). */
static int pin_for_xattr(request_t *r, pinned_t *p) {
  int err = pin(r, p);
  if (err) return err;
  if (!S_ISREG(p->st.st_mode) && !S_ISDIR(p->st.st_mode)) {
    unpin(p);
    return EPERM;
  }
  return 0;
}

/* Appends `len` bytes to r->out, growing it. */
static int append(request_t *r, size_t *cap, const char *data, size_t len) {
  if (r->out_len + len > *cap) {
    size_t next = *cap ? *cap * 2 : 4096;
    while (next < r->out_len + len) next *= 2;
    char *grown = realloc(r->out, next);
    if (!grown) return ENOMEM;
    r->out = grown;
    *cap = next;
  }
  memcpy(r->out + r->out_len, data, len);
  r->out_len += len;
  return 0;
}

static int list_dir(request_t *r) {
  int fd = openat(r->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  DIR *dir = fdopendir(fd);
  if (!dir) return close_failed(fd);
  size_t cap = 0;
  int err = 0;
  for (;;) {
    errno = 0;
    struct dirent *entry = readdir(dir);
    if (!entry) {
      err = errno;
      break;
    }
    const char *n = entry->d_name;
    if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'))) continue;
    if ((err = append(r, &cap, n, strlen(n) + 1))) break;
    r->out_count++;
  }
  closedir(dir);
  return err;
}

/* Reads an attribute value or list whose size may change between the size
 * query and the read (ERANGE: ask again). */
static int read_sized(request_t *r, const char *proc, bool list) {
  for (int attempt = 0; attempt < 8; attempt++) {
    ssize_t size = list ? listxattr(proc, NULL, 0) : getxattr(proc, r->text, NULL, 0);
    if (size < 0) return errno;
    /* At least one byte: a size of 0 would make the second call another
     * size query, not a read. */
    size_t cap = size ? (size_t)size : 1;
    free(r->out);
    r->out = malloc(cap);
    if (!r->out) return ENOMEM;
    ssize_t got =
        list ? listxattr(proc, r->out, cap) : getxattr(proc, r->text, r->out, cap);
    if (got >= 0) {
      r->out_len = (size_t)got;
      return 0;
    }
    if (errno != ERANGE) return errno;
  }
  return ERANGE;
}

static int xattr_op(request_t *r) {
  pinned_t p;
  int err = pin_for_xattr(r, &p);
  if (err) return err;
  switch (r->op) {
  case OP_GETXATTR:
    err = read_sized(r, p.proc, false);
    if (err == ENODATA) r->absent = true, err = 0;
    break;
  case OP_LISTXATTR:
    err = read_sized(r, p.proc, true);
    break;
  case OP_SETXATTR:
    err = setxattr(p.proc, r->text, r->buf, r->buf_len, (int)r->num[0]) < 0 ? errno : 0;
    break;
  case OP_REMOVEXATTR:
    err = removexattr(p.proc, r->text) < 0 ? errno : 0;
    break;
  }
  unpin(&p);
  return err;
}

/* chmod that never follows a symlink and never changes one (a symlink's mode
 * means nothing on Linux): EOPNOTSUPP, as fchmodat(AT_SYMLINK_NOFOLLOW) says. */
static int chmod_entry(request_t *r) {
  pinned_t p;
  int err = pin(r, &p);
  if (err) return err;
  if (S_ISLNK(p.st.st_mode))
    err = EOPNOTSUPP;
  else
    err = chmod(p.proc, (mode_t)r->num[0]) < 0 ? errno : 0;
  unpin(&p);
  return err;
}

static int read_small_file(request_t *r) {
  if (r->num[0] < 0) return EINVAL;
  size_t max = (size_t)r->num[0];
  struct stat st;
  int fd = open_regular(r, r->name, O_RDONLY, 0, &st);
  if (fd < 0) return -fd;
  if ((uint64_t)st.st_size > max) return close(fd), EFBIG;
  /* One byte past the limit shows a file that grew since the fstat. */
  size_t cap = (size_t)st.st_size + 1;
  int err = 0;
  r->out = malloc(cap);
  if (!r->out) err = ENOMEM;
  while (!err) {
    if (r->out_len == cap) {
      if (cap > max) {
        err = EFBIG;
        break;
      }
      size_t next = cap * 2 > max + 1 ? max + 1 : cap * 2;
      char *grown = realloc(r->out, next);
      if (!grown) {
        err = ENOMEM;
        break;
      }
      r->out = grown, cap = next;
    }
    ssize_t n = read(fd, r->out + r->out_len, cap - r->out_len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = errno;
    if (n <= 0) break;
    r->out_len += (size_t)n;
  }
  if (!err && r->out_len > max) err = EFBIG;
  close(fd);
  return err;
}

static int create_file(request_t *r) {
  bool exclusive = r->num[1] != 0, sync = r->num[2] != 0;
  struct stat st;
  int fd = open_regular(r, r->name, O_CREAT | O_WRONLY | (exclusive ? O_EXCL : O_TRUNC),
                        (mode_t)r->num[0], &st);
  if (fd < 0) return -fd;
  size_t done = 0;
  while (done < r->buf_len) {
    ssize_t n = write(fd, r->buf + done, r->buf_len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return close_failed(fd);
    done += (size_t)n;
  }
  if (sync && fsync(fd) < 0) return close_failed(fd);
  /* close() reports delayed write errors on network filesystems. */
  if (close(fd) < 0 && errno != EINTR) return errno;
  return 0;
}

static int fsync_dir(request_t *r) {
  int fd = openat(r->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = fsync(fd) < 0 ? errno : 0;
  close(fd);
  return err;
}

static int rename_entry(request_t *r) {
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 28)
  int res = renameat2(r->fd, r->name, r->fd2, r->name2, (unsigned)r->num[0]);
#else
  int res = (int)syscall(SYS_renameat2, r->fd, r->name, r->fd2, r->name2, (unsigned)r->num[0]);
#endif
  return res < 0 ? errno : 0;
}

static int readlink_entry(request_t *r) {
  /* A result that fills the buffer may have been cut: refuse it. */
  size_t cap = sizeof r->text - 1;
  ssize_t n = readlinkat(r->fd, r->name, r->text, cap);
  if (n < 0) return errno;
  if ((size_t)n >= cap) return ENAMETOOLONG;
  r->text[n] = '\0';
  if (!valid_utf8((const unsigned char *)r->text, (size_t)n))
    return fail(r, EIO, "lower symlink target is not valid UTF-8");
  r->value = n;
  return 0;
}

/* Checks a buffer range [offset, offset + length) given in num[0], num[1]. */
static bool buffer_range(request_t *r) {
  int64_t offset = r->num[0], length = r->num[1];
  return offset >= 0 && length >= 0 && (uint64_t)offset <= r->buf_len &&
         (uint64_t)length <= r->buf_len - (uint64_t)offset;
}

static ssize_t retry_io(request_t *r) {
  ssize_t n;
  char *at = r->buf + r->num[0];
  do {
    n = r->op == OP_PREAD ? pread(r->fd, at, (size_t)r->num[1], (off_t)r->num[2])
                          : pwrite(r->fd, at, (size_t)r->num[1], (off_t)r->num[2]);
  } while (n < 0 && errno == EINTR);
  return n;
}

static const char *self_or_name(request_t *r) { return r->self ? "" : r->name; }
static int self_flag(request_t *r) { return r->self ? AT_EMPTY_PATH : 0; }

/* Returns 0 or an errno; out values go into the request. Runs on any thread. */
static int run(request_t *r) {
  int res;
  switch (r->op) {
  case OP_OPEN_ROOT:
    res = open(r->text, O_PATH | O_DIRECTORY | O_CLOEXEC);
    break;
  case OP_OPEN_DIR:
    res = openat(r->fd, r->name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    break;
  case OP_STAT:
    res = fstatat(r->fd, self_or_name(r), &r->st, AT_SYMLINK_NOFOLLOW | self_flag(r));
    break;
  case OP_FSTAT:
    res = fstat(r->fd, &r->st);
    break;
  case OP_LIST:
    return list_dir(r);
  case OP_OPEN_FILE:
    res = open_regular(r, r->name, (int)r->num[0], (mode_t)r->num[1], &r->st);
    if (res < 0) return -res;
    r->value = res;
    return 0;
  case OP_CLOSE:
    /* Linux frees the descriptor even when close reports EINTR. */
    res = close(r->fd);
    if (res < 0 && errno == EINTR) res = 0;
    break;
  case OP_PREAD:
  case OP_PWRITE: {
    if (!buffer_range(r)) return fail(r, EINVAL, "buffer range out of bounds");
    ssize_t n = retry_io(r);
    if (n < 0) return errno;
    r->value = n;
    return 0;
  }
  case OP_FTRUNCATE:
    res = ftruncate(r->fd, (off_t)r->num[0]);
    break;
  case OP_FALLOCATE:
    res = fallocate(r->fd, (int)r->num[0], (off_t)r->num[1], (off_t)r->num[2]);
    break;
  case OP_LSEEK: {
    /* SEEK_DATA / SEEK_HOLE on a pinned descriptor: where the lower has holes. */
    off_t at = lseek(r->fd, (off_t)r->num[0], (int)r->num[1]);
    if (at < 0) return errno;
    r->value = at;
    return 0;
  }
  case OP_FSYNC:
    res = r->num[0] ? fdatasync(r->fd) : fsync(r->fd);
    break;
  case OP_MKDIR:
    res = mkdirat(r->fd, r->name, (mode_t)r->num[0]);
    break;
  case OP_UNLINK:
    res = unlinkat(r->fd, r->name, 0);
    break;
  case OP_RMDIR:
    res = unlinkat(r->fd, r->name, AT_REMOVEDIR);
    break;
  case OP_RENAME:
    return rename_entry(r);
  case OP_LINK:
    /* No AT_SYMLINK_FOLLOW: a symlink is linked as itself. */
    res = linkat(r->fd, r->name, r->fd2, r->name2, 0);
    break;
  case OP_SYMLINK:
    res = symlinkat(r->text, r->fd, r->name);
    break;
  case OP_READLINK:
    return readlink_entry(r);
  case OP_MKNOD:
    res = mknodat(r->fd, r->name, (mode_t)r->num[0], (dev_t)r->num[1]);
    break;
  case OP_CHMOD:
    return chmod_entry(r);
  case OP_CHOWN:
    res = fchownat(r->fd, self_or_name(r), (uid_t)r->num[0], (gid_t)r->num[1],
                   AT_SYMLINK_NOFOLLOW | self_flag(r));
    break;
  case OP_UTIMENS: {
    struct timespec times[2] = {{(time_t)r->num[0], (long)r->num[1]},
                                {(time_t)r->num[2], (long)r->num[3]}};
    res = utimensat(r->fd, self_or_name(r), times, AT_SYMLINK_NOFOLLOW | self_flag(r));
    break;
  }
  case OP_GETXATTR:
  case OP_SETXATTR:
  case OP_LISTXATTR:
  case OP_REMOVEXATTR:
    return xattr_op(r);
  case OP_READ_SMALL_FILE:
    return read_small_file(r);
  case OP_CREATE_FILE:
    return create_file(r);
  case OP_FSYNC_DIR:
    return fsync_dir(r);
  case OP_STATFS:
    res = fstatfs(r->fd, &r->sfs);
    break;
  default:
    return ENOSYS;
  }
  if (res < 0) return errno;
  r->value = res;
  return 0;
}

static void execute(request_t *r) {
  if (!r->err) r->err = run(r);
}

/* ---- JS side ------------------------------------------------------------------ */

typedef struct instance {
  napi_ref make_error; /* (errno, message | undefined) => FsError */
  napi_ref make_stat;  /* (dev, ino, mode, ..., ctimeNs) => LowerStat */
} instance_t;

static void free_instance(napi_env env, void *data, void *hint) {
  (void)hint;
  instance_t *inst = data;
  if (inst->make_error) napi_delete_reference(env, inst->make_error);
  if (inst->make_stat) napi_delete_reference(env, inst->make_stat);
  free(inst);
}

static instance_t *instance(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  return data;
}

static napi_value undefined(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

static napi_value number(napi_env env, double value) {
  napi_value v;
  napi_create_double(env, value, &v);
  return v;
}

static napi_value make_error(napi_env env, int err, const char *message) {
  instance_t *inst = instance(env);
  napi_value fn, result, args[2];
  args[0] = number(env, err);
  args[1] = undefined(env);
  if (message) napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &args[1]);
  if (inst && inst->make_error && napi_get_reference_value(env, inst->make_error, &fn) == napi_ok &&
      napi_call_function(env, undefined(env), fn, 2, args, &result) == napi_ok)
    return result;
  /* setup() not called: a plain Error that still says which errno. */
  napi_value code, text;
  napi_create_string_utf8(env, strerrorname_np(err) ? strerrorname_np(err) : "EIO",
                          NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, message ? message : strerror(err), NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &result);
  return result;
}

static int64_t timespec_ns(struct timespec t) {
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static napi_value make_stat(napi_env env, const struct stat *st, bool *failed) {
  instance_t *inst = instance(env);
  napi_value fn, result, a[13];
  napi_create_bigint_uint64(env, (uint64_t)st->st_dev, &a[0]);
  napi_create_bigint_uint64(env, (uint64_t)st->st_ino, &a[1]);
  a[2] = number(env, st->st_mode);
  a[3] = number(env, (double)st->st_nlink);
  a[4] = number(env, st->st_uid);
  a[5] = number(env, st->st_gid);
  a[6] = number(env, (double)st->st_rdev);
  a[7] = number(env, (double)st->st_size);
  a[8] = number(env, (double)st->st_blksize);
  a[9] = number(env, (double)st->st_blocks);
  napi_create_bigint_int64(env, timespec_ns(st->st_atim), &a[10]);
  napi_create_bigint_int64(env, timespec_ns(st->st_mtim), &a[11]);
  napi_create_bigint_int64(env, timespec_ns(st->st_ctim), &a[12]);
  if (inst && inst->make_stat && napi_get_reference_value(env, inst->make_stat, &fn) == napi_ok &&
      napi_call_function(env, undefined(env), fn, 13, a, &result) == napi_ok)
    return result;
  *failed = true;
  return make_error(env, EIO, "lower binding: setup() was not called");
}

static napi_value make_buffer(napi_env env, const char *data, size_t len) {
  napi_value v;
  void *copy;
  if (napi_create_buffer_copy(env, len, len ? data : "", &copy, &v) != napi_ok) return NULL;
  return v;
}

/* NUL-separated strings -> string[]. A name that is not valid UTF-8 becomes
 * "/" and its bytes in hex: it can reach no lower entry (a name with "/" is
 * refused) and aliases no real name. With skip_invalid it is left out. */
static napi_value make_names(napi_env env, const char *data, size_t len, size_t count,
                             bool skip_invalid) {
  napi_value array;
  if (napi_create_array_with_length(env, count, &array) != napi_ok) return NULL;
  uint32_t index = 0;
  for (size_t at = 0; at < len;) {
    size_t n = strnlen(data + at, len - at);
    napi_value s;
    if (valid_utf8((const unsigned char *)data + at, n)) {
      if (napi_create_string_utf8(env, data + at, n, &s) != napi_ok) return NULL;
    } else if (skip_invalid) {
      at += n + 1;
      continue;
    } else {
      char hex[1 + 2 * NAME_MAX + 1];
      size_t k = 0;
      hex[k++] = '/';
      for (size_t i = 0; i < n && k + 2 < sizeof hex; i++)
        k += (size_t)snprintf(hex + k, sizeof hex - k, "%02x", (unsigned char)data[at + i]);
      if (napi_create_string_utf8(env, hex, k, &s) != napi_ok) return NULL;
    }
    if (napi_set_element(env, array, index++, s) != napi_ok) return NULL;
    at += n + 1;
  }
  return array;
}

static napi_value make_statfs(napi_env env, const struct statfs *s) {
  napi_value v;
  if (napi_create_object(env, &v) != napi_ok) return NULL;
  const struct {
    const char *key;
    double value;
  } fields[] = {
      {"bsize", (double)s->f_bsize}, {"blocks", (double)s->f_blocks},
      {"bfree", (double)s->f_bfree}, {"bavail", (double)s->f_bavail},
      {"files", (double)s->f_files}, {"ffree", (double)s->f_ffree},
      {"type", (double)(uint32_t)s->f_type}, {"namelen", (double)s->f_namelen},
  };
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
    if (napi_set_named_property(env, v, fields[i].key, number(env, fields[i].value)) != napi_ok)
      return NULL;
  return v;
}

/* The request's outcome as a JS value: its result, or (with *failed) an FsError. */
static napi_value deliver(napi_env env, request_t *r, bool *failed) {
  *failed = r->err != 0;
  if (r->err) return make_error(env, r->err, r->message);
  napi_value v = NULL;
  switch (r->op) {
  case OP_OPEN_ROOT:
  case OP_OPEN_DIR:
  case OP_PREAD:
  case OP_PWRITE:
  case OP_LSEEK:
    v = number(env, (double)r->value);
    break;
  case OP_STAT:
  case OP_FSTAT:
    return make_stat(env, &r->st, failed);
  case OP_OPEN_FILE: {
    napi_value stat = make_stat(env, &r->st, failed);
    if (*failed) {
      close((int)r->value);
      return stat;
    }
    if (napi_create_object(env, &v) != napi_ok ||
        napi_set_named_property(env, v, "fd", number(env, (double)r->value)) != napi_ok ||
        napi_set_named_property(env, v, "stat", stat) != napi_ok) {
      close((int)r->value);
      v = NULL;
    }
    break;
  }
  case OP_LIST:
    v = make_names(env, r->out, r->out_len, r->out_count, false);
    break;
  case OP_LISTXATTR:
    v = make_names(env, r->out, r->out_len, 0, true);
    break;
  case OP_READLINK:
    napi_create_string_utf8(env, r->text, (size_t)r->value, &v);
    break;
  case OP_GETXATTR:
    v = r->absent ? undefined(env) : make_buffer(env, r->out, r->out_len);
    break;
  case OP_READ_SMALL_FILE:
    v = make_buffer(env, r->out, r->out_len);
    break;
  case OP_STATFS:
    v = make_statfs(env, &r->sfs);
    break;
  default:
    v = undefined(env);
  }
  if (v) return v;
  /* A JS value could not be made (out of memory, or an exception pending). */
  napi_value ignored;
  napi_get_and_clear_last_exception(env, &ignored);
  *failed = true;
  return make_error(env, ENOMEM, "lower binding: could not build the result");
}

/* A JS number that is an exact integer (NaN, 1.5 or Infinity are refused:
 * napi_get_value_int64 would quietly make them 0, the descriptor of stdin). */
static bool get_integer(napi_env env, napi_value v, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return false;
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return false;
  *out = (int64_t)d;
  return (double)*out == d;
}

/* V8 turns a lone surrogate into U+FFFD on the way to UTF-8, so a name with
 * one would reach the entry whose name has a real U+FFFD. Only a string whose
 * UTF-8 has U+FFFD is looked at again, as UTF-16. */
static bool has_lone_surrogate(napi_env env, napi_value v, const char *utf8, size_t len) {
  if (!memmem(utf8, len, "\xef\xbf\xbd", 3)) return false;
  char16_t units[TEXT_BUF];
  size_t n;
  if (napi_get_value_string_utf16(env, v, units, TEXT_BUF, &n) != napi_ok) return true;
  for (size_t i = 0; i < n; i++) {
    bool high = units[i] >= 0xd800 && units[i] <= 0xdbff;
    bool low = units[i] >= 0xdc00 && units[i] <= 0xdfff;
    if (low) return true;
    if (high && (i + 1 >= n || units[i + 1] < 0xdc00 || units[i + 1] > 0xdfff)) return true;
    if (high) i++;
  }
  return false;
}

/*
 * Decodes the JS arguments by the operation's signature:
 *   d  descriptor (an int32)           -> fd, then fd2
 *   n  name: one path component        -> name, then name2
 *   e  like n, but "" is the descriptor itself (self)
 *   t  text up to PATH_MAX - 1 bytes   -> text (path, symlink target)
 *   a  xattr name up to 255 bytes      -> text
 *   i  integer (exact, int64)          -> num[], in order
 *   f  boolean                         -> num[], in order
 *   b  Buffer                          -> buf, buf_len (*buf_arg: its JS value)
 * A bad argument fails the request with EINVAL (never throws: every method
 * settles, as the promise contract says).
 */
static void parse(napi_env env, request_t *r, size_t argc, napi_value *argv, napi_value *buf_arg) {
  const char *sig = ops[r->op].signature;
  int fds = 0, names = 0, nums = 0;
  for (size_t i = 0; sig[i]; i++) {
    napi_value v = i < argc ? argv[i] : NULL;
    if (!v) v = undefined(env);
    switch (sig[i]) {
    case 'd': {
      int64_t fd;
      if (!get_integer(env, v, &fd) || fd < INT32_MIN || fd > INT32_MAX) goto bad_number;
      *(fds++ ? &r->fd2 : &r->fd) = (int)fd;
      break;
    }
    case 'n':
    case 'e': {
      char *out = names++ ? r->name2 : r->name;
      size_t len;
      if (napi_get_value_string_utf8(env, v, out, NAME_BUF, &len) != napi_ok) goto bad_string;
      if (len > NAME_MAX) goto too_long;
      if (memchr(out, '/', len) || strlen(out) != len || !strcmp(out, ".") || !strcmp(out, "..") ||
          has_lone_surrogate(env, v, out, len))
        goto bad_name;
      if (sig[i] == 'e' && len == 0) r->self = true;
      break;
    }
    case 't':
    case 'a': {
      size_t len, max = sig[i] == 't' ? PATH_MAX - 1 : XATTR_NAME_MAX;
      if (napi_get_value_string_utf8(env, v, r->text, max + STRING_SLACK, &len) != napi_ok)
        goto bad_string;
      if (len > max) goto too_long;
      if (strlen(r->text) != len || has_lone_surrogate(env, v, r->text, len)) goto bad_string;
      break;
    }
    case 'i':
      if (!get_integer(env, v, &r->num[nums++])) goto bad_number;
      break;
    case 'f': {
      bool flag;
      if (napi_get_value_bool(env, v, &flag) != napi_ok) goto bad_boolean;
      r->num[nums++] = flag;
      break;
    }
    case 'b': {
      void *data;
      size_t len;
      bool is_buffer = false;
      if (napi_is_buffer(env, v, &is_buffer) != napi_ok || !is_buffer ||
          napi_get_buffer_info(env, v, &data, &len) != napi_ok)
        goto bad_buffer;
      r->buf = data;
      r->buf_len = len;
      *buf_arg = v;
      break;
    }
    }
  }
  return;
bad_number:
  r->err = EINVAL, r->message = "expected an integer";
  return;
bad_boolean:
  r->err = EINVAL, r->message = "expected a boolean";
  return;
bad_string:
  r->err = EINVAL, r->message = "expected a string without NUL or lone surrogates";
  return;
bad_buffer:
  r->err = EINVAL, r->message = "expected a Buffer";
  return;
bad_name:
  r->err = EINVAL;
  r->message = "a lower name must be one path component (no NUL or lone surrogate)";
  return;
too_long:
  r->err = ENAMETOOLONG;
}

static void work_execute(napi_env env, void *data) {
  (void)env;
  execute(data);
}

static void work_complete(napi_env env, napi_status status, void *data) {
  request_t *r = data;
  if (status == napi_cancelled && !r->err) r->err = ECANCELED;
  bool failed;
  napi_value v = deliver(env, r, &failed);
  if (failed)
    napi_reject_deferred(env, r->deferred, v);
  else
    napi_resolve_deferred(env, r->deferred, v);
  if (r->buf_ref) napi_delete_reference(env, r->buf_ref);
  napi_delete_async_work(env, r->work);
  free(r->out);
  free(r);
}

/* Every exported function: data says which operation and how it runs. */
static napi_value call(napi_env env, napi_callback_info info) {
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  void *data;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, &data) != napi_ok) return NULL;
  uintptr_t tag = (uintptr_t)data;
  int op = (int)(tag & (ASYNC_TAG - 1));
  napi_value buf_arg = NULL;

  if (!(tag & ASYNC_TAG)) {
    request_t r;
    request_init(&r, op);
    parse(env, &r, argc, argv, &buf_arg);
    execute(&r);
    bool failed;
    napi_value v = deliver(env, &r, &failed);
    free(r.out);
    return v;
  }

  request_t *r = malloc(sizeof *r);
  napi_value promise;
  if (!r) { /* still a promise, as the contract says */
    napi_deferred deferred;
    if (napi_create_promise(env, &deferred, &promise) != napi_ok) return NULL;
    napi_reject_deferred(env, deferred, make_error(env, ENOMEM, NULL));
    return promise;
  }
  request_init(r, op);
  if (napi_create_promise(env, &r->deferred, &promise) != napi_ok) {
    free(r);
    return NULL;
  }
  parse(env, r, argc, argv, &buf_arg);
  napi_value resource;
  if (!r->err && buf_arg && napi_create_reference(env, buf_arg, 1, &r->buf_ref) != napi_ok)
    r->err = ENOMEM;
  /* (Node-API 8 keeps no references to strings, so the name is made each time.) */
  if (!r->err && (napi_create_string_utf8(env, "cryptmount:lower", NAPI_AUTO_LENGTH, &resource) !=
                      napi_ok ||
                  napi_create_async_work(env, NULL, resource, work_execute, work_complete, r,
                                         &r->work) != napi_ok)) {
    r->err = EAGAIN;
    r->message = "lower binding: could not queue the request";
  }
  /* Once queued, the request belongs to the threadpool and work_complete:
   * not even r->err may be read here (the worker is writing it). */
  if (!r->err && napi_queue_async_work(env, r->work) == napi_ok) return promise;
  if (r->work) {
    napi_delete_async_work(env, r->work);
    r->err = EAGAIN;
    r->message = "lower binding: could not queue the request";
  }
  /* Nothing was queued: settle now. */
  bool failed;
  napi_value v = deliver(env, r, &failed);
  napi_reject_deferred(env, r->deferred, v);
  if (r->buf_ref) napi_delete_reference(env, r->buf_ref);
  free(r->out);
  free(r);
  return promise;
}

/* setup(makeError, makeStat): the JS factories results are made with. */
static napi_value js_setup(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  instance_t *inst = instance(env);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || !inst) {
    napi_throw_type_error(env, NULL, "setup(makeError, makeStat)");
    return NULL;
  }
  if (inst->make_error) napi_delete_reference(env, inst->make_error);
  if (inst->make_stat) napi_delete_reference(env, inst->make_stat);
  napi_create_reference(env, argv[0], 1, &inst->make_error);
  napi_create_reference(env, argv[1], 1, &inst->make_stat);
  return NULL;
}

#define CHECK(call)                                                            \
  do {                                                                         \
    if ((call) != napi_ok) {                                                   \
      napi_throw_error(env, NULL, "cryptmount lower binding: " #call);         \
      return NULL;                                                             \
    }                                                                          \
  } while (0)

static napi_value init_module(napi_env env, napi_value exports) {
  instance_t *inst = calloc(1, sizeof *inst);
  if (!inst) return NULL;
  CHECK(napi_set_instance_data(env, inst, free_instance, NULL));

  const char *flavours[2] = {"sync", "async"};
  for (int f = 0; f < 2; f++) {
    napi_value object;
    CHECK(napi_create_object(env, &object));
    for (int op = 0; op < OP_COUNT; op++) {
      napi_value fn;
      uintptr_t tag = (uintptr_t)op | (f ? ASYNC_TAG : 0);
      CHECK(napi_create_function(env, ops[op].js_name, NAPI_AUTO_LENGTH, call, (void *)tag, &fn));
      CHECK(napi_set_named_property(env, object, ops[op].js_name, fn));
    }
    CHECK(napi_set_named_property(env, exports, flavours[f], object));
  }
  napi_value setup;
  CHECK(napi_create_function(env, "setup", NAPI_AUTO_LENGTH, js_setup, NULL, &setup));
  CHECK(napi_set_named_property(env, exports, "setup", setup));
  const struct {
    const char *name;
    double value;
  } constants[] = {
      {"version", LOWER_VERSION},
      {"UTIME_NOW", UTIME_NOW},
      {"UTIME_OMIT", UTIME_OMIT},
  };
  for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++)
    CHECK(napi_set_named_property(env, exports, constants[i].name,
                                  number(env, constants[i].value)));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
