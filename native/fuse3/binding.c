/*
 * cryptmount's FUSE binding: libfuse 3's low-level API served on Node's own
 * event loop.
 *
 * Why not a thread per request: every FUSE request that crosses from a FUSE
 * thread to the JS thread and back costs tens of microseconds of wake-ups,
 * more than the filesystem's own work on metadata. Here the /dev/fuse file
 * descriptor is non-blocking and watched by a uv_poll handle; requests are
 * read, decoded by libfuse and handed to one JS function on the JS thread,
 * which answers them later through the reply functions below. Nothing here
 * blocks except the lower-level syscalls the kernel itself makes fast.
 *
 * Contract with JS (src/fs/fuse3/binding.ts, native/README.md):
 *   - dispatch(op, req, ...args) is called for every request; `req` is a
 *     request id (an integer below 2^53, never reused) to pass to one reply
 *     function. Replies look the id up in the table of live requests and take
 *     it out: an unknown or already answered id is ignored (the reply returns
 *     false), so a buggy second answer can never touch freed memory.
 *   - the operation codes are exported as `ops`; names that are not UTF-8
 *     are answered EILSEQ here and never reach JS.
 *   - attributes travel as Float64Array slices of ATTR_FIELDS numbers.
 *   - FORGET needs no reply; INIT and EXIT carry no request.
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <fuse_lowlevel.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <uv.h>

#define BINDING_VERSION 5
#define MAX_REQUESTS_PER_WAKEUP 64
/* Batches per wake-up, so timers and I/O completions get their turn. */
#define MAX_ROUNDS_PER_WAKEUP 32
#define ATTR_FIELDS 15
#define STATFS_FIELDS 9

/* The operation codes JS receives; exported as `ops` (name -> code), so
 * src/fs/fuse3/binding.ts can check its copy at load time. New operations go
 * at the end: the codes of the others never change. */
#define OPS(X)                                                                 \
  X(INIT)                                                                      \
  X(EXIT)                                                                      \
  X(LOOKUP)                                                                    \
  X(FORGET)                                                                    \
  X(GETATTR)                                                                   \
  X(SETATTR)                                                                   \
  X(READLINK)                                                                  \
  X(MKNOD)                                                                     \
  X(MKDIR)                                                                     \
  X(UNLINK)                                                                    \
  X(RMDIR)                                                                     \
  X(SYMLINK)                                                                   \
  X(RENAME)                                                                    \
  X(LINK)                                                                      \
  X(OPEN)                                                                      \
  X(READ)                                                                      \
  X(WRITE)                                                                     \
  X(RELEASE)                                                                   \
  X(FSYNC)                                                                     \
  X(OPENDIR)                                                                   \
  X(READDIR)                                                                   \
  X(READDIRPLUS)                                                               \
  X(RELEASEDIR)                                                                \
  X(STATFS)                                                                    \
  X(SETXATTR)                                                                  \
  X(GETXATTR)                                                                  \
  X(LISTXATTR)                                                                 \
  X(REMOVEXATTR)                                                               \
  X(ACCESS)                                                                    \
  X(CREATE)                                                                    \
  X(FALLOCATE)                                                                 \
  X(FSYNCDIR)                                                                  \
  X(LSEEK)

enum op {
#define OP_ENUM(name) OP_##name,
  OPS(OP_ENUM)
#undef OP_ENUM
};

typedef struct table table_t;

typedef struct session {
  napi_env env;
  table_t *table;
  napi_ref dispatch_ref;
  napi_ref resource_ref;
  napi_async_context async_context;
  /* Valid only while requests are being processed (inside on_readable). */
  napi_value dispatch;
  struct fuse_session *se;
  struct fuse_buf buf;
  uv_poll_t poll;
  double entry_timeout;
  double attr_timeout;
  unsigned max_write;
  int writeback;
  uint64_t spin_ns;
  int processing;
  int close_requested;
  int closed;
  int poll_closed;
  int finalized;
  /* Requests handed to JS and not answered yet; the libfuse session must
   * outlive them (an answer frees memory that belongs to it). */
  long outstanding;
  int destroy_pending;
} session_t;

/* ---- helpers ------------------------------------------------------------- */

#define CHECK(env, call)                                                       \
  do {                                                                         \
    if ((call) != napi_ok) {                                                   \
      napi_throw_error((env), NULL, "cryptmount fuse3 binding: " #call);       \
      return NULL;                                                             \
    }                                                                          \
  } while (0)

static napi_value num(napi_env env, double value) {
  napi_value v;
  napi_create_double(env, value, &v);
  return v;
}

static napi_value str(napi_env env, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

static napi_value boolean(napi_env env, int value) {
  napi_value v;
  napi_get_boolean(env, value, &v);
  return v;
}

static double dbl(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

/* Numbers from JS as integers without undefined behaviour: NaN is 0, and
 * values out of range saturate. */
static uint64_t u64(double d) {
  if (!(d > 0)) return 0;
  return d >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)d;
}

static int64_t i64(double d) {
  if (d != d) return 0;
  if (d <= -9223372036854775808.0) return INT64_MIN;
  return d >= 9223372036854775808.0 ? INT64_MAX : (int64_t)d;
}

/* ---- live requests ----------------------------------------------------------- */

/*
 * Every request handed to JS is entered here under a fresh id (a counter
 * from 1 that would take centuries to reach 2^53, so ids are never reused)
 * and taken out by the one reply that answers it. An open-addressing table
 * with linear probing, keyed by the id itself: ids are consecutive, so they
 * spread over the slots on their own. One table per Node environment
 * (instance data), since the reply functions see only the environment.
 */
#define MAX_ID 9007199254740992.0 /* 2^53: every id below is exact in a double */

typedef struct live {
  uint64_t id; /* 0: a free slot */
  fuse_req_t req;
  session_t *s;
  size_t size; /* bytes the kernel asked for (READ, READDIR, xattrs) or sent (WRITE), else 0 */
  int op;
} live_t;

struct table {
  live_t *slots;
  size_t mask; /* capacity - 1; capacity is a power of two */
  size_t count;
  uint64_t next_id;
};

static int table_put(table_t *t, const live_t *entry) {
  if ((t->count + 1) * 2 > t->mask + 1 || !t->slots) {
    size_t capacity = t->slots ? (t->mask + 1) * 2 : 64;
    live_t *slots = calloc(capacity, sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; t->slots && i <= t->mask; i++) {
      if (!t->slots[i].id) continue;
      size_t j = t->slots[i].id & (capacity - 1);
      while (slots[j].id) j = (j + 1) & (capacity - 1);
      slots[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = slots;
    t->mask = capacity - 1;
  }
  size_t i = entry->id & t->mask;
  while (t->slots[i].id) i = (i + 1) & t->mask;
  t->slots[i] = *entry;
  t->count++;
  return 0;
}

/* Takes request `id` out of the table into *out; 0 if it is not live. */
static int table_take(table_t *t, uint64_t id, live_t *out) {
  if (!t || !t->slots || !id) return 0;
  size_t i = id & t->mask;
  while (t->slots[i].id != id) {
    if (!t->slots[i].id) return 0;
    i = (i + 1) & t->mask;
  }
  *out = t->slots[i];
  t->count--;
  /* Backward-shift deletion: later entries of the probe run move up so that
   * no lookup stops early at the hole. */
  for (size_t j = (i + 1) & t->mask; t->slots[j].id; j = (j + 1) & t->mask) {
    size_t home = t->slots[j].id & t->mask;
    int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    t->slots[i] = t->slots[j];
    i = j;
  }
  t->slots[i].id = 0;
  return 1;
}

static table_t *table_of(napi_env env) {
  void *data = NULL;
  if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
  return data;
}

static void finalize_table(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  table_t *t = data;
  free(t->slots);
  free(t);
}

/* The live request a JS value names: taken out of the table (0 if none). */
static int take_request(napi_env env, napi_value v, live_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 1 && d < MAX_ID) ||
      d != (double)(uint64_t)d)
    return 0;
  return table_take(table_of(env), (uint64_t)d, out);
}

static void answered(session_t *s);

/* Arguments of a dispatch after op and req. */
#define MAX_DISPATCH_ARGS 14

/*
 * Calls dispatch(op, req, ...args); a request (req non-NULL) is entered in
 * the table first. The JS side catches everything, so a throw is a bug: the
 * request, if JS has not answered it, gets EIO (a later answer from JS then
 * finds no request and is ignored).
 */
static void call_js(session_t *s, fuse_req_t req, int op, size_t size, size_t argc,
                    napi_value *args) {
  napi_env env = s->env;
  napi_value argv[MAX_DISPATCH_ARGS + 2];
  napi_value global, result;
  live_t entry = {.req = req, .s = s, .size = size, .op = op};
  if (argc > MAX_DISPATCH_ARGS) argc = MAX_DISPATCH_ARGS; /* never: DISPATCH checks */
  argv[0] = num(env, op);
  if (req) {
    entry.id = ++s->table->next_id;
    if (table_put(s->table, &entry) != 0) {
      fuse_reply_err(req, ENOMEM);
      return;
    }
    s->outstanding++;
    argv[1] = num(env, (double)entry.id);
  } else {
    napi_get_null(env, &argv[1]);
  }
  for (size_t i = 0; i < argc; i++) argv[i + 2] = args[i];
  napi_get_global(env, &global);
  if (napi_call_function(env, global, s->dispatch, argc + 2, argv, &result) != napi_ok) {
    napi_value exception;
    napi_get_and_clear_last_exception(env, &exception);
    live_t live;
    if (req && table_take(s->table, entry.id, &live)) {
      fuse_reply_err(live.req, EIO);
      answered(live.s);
    }
  }
}

/* Opens a handle scope around a dispatch. The session is read once, before
 * the call: JS may answer (and so free) the request synchronously. `size` is
 * what the kernel asked for (0 when it asks for no data). */
#define DISPATCH_SIZED(session, req, op, size, ...)                            \
  do {                                                                         \
    session_t *s_ = (session);                                                 \
    napi_handle_scope scope_;                                                  \
    napi_open_handle_scope(s_->env, &scope_);                                  \
    napi_value args_[] = {__VA_ARGS__};                                        \
    _Static_assert(sizeof(args_) / sizeof(args_[0]) <= MAX_DISPATCH_ARGS,      \
                   "too many dispatch arguments");                             \
    call_js(s_, (req), (op), (size), sizeof(args_) / sizeof(args_[0]), args_); \
    napi_close_handle_scope(s_->env, scope_);                                  \
  } while (0)
#define DISPATCH(session, req, op, ...) DISPATCH_SIZED(session, req, op, 0, __VA_ARGS__)

#define S(req) ((session_t *)fuse_req_userdata(req))
#define E(req) (S(req)->env)

/*
 * Whether a NUL-terminated string is well-formed UTF-8, as a strict decoder
 * sees it (Unicode 15, table 3-7): no overlong forms, no surrogates
 * (U+D800-DFFF), nothing above U+10FFFF. Names are encrypted as UTF-8
 * strings; turning invalid bytes into U+FFFD would make "a\xff" and "a\xfe"
 * one file, so such names are refused with EILSEQ before JS sees them.
 */
static int valid_utf8(const char *text) {
  const unsigned char *p = (const unsigned char *)text;
  while (*p) {
    unsigned c = *p;
    if (c < 0x80) {
      p++;
      continue;
    }
    int more;
    unsigned lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
      more = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      more = 2;
      if (c == 0xe0) lo = 0xa0; /* overlong */
      if (c == 0xed) hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
      more = 3;
      if (c == 0xf0) lo = 0x90; /* overlong */
      if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
    } else {
      return 0; /* a continuation byte, C0, C1 or F5-FF */
    }
    if (p[1] < lo || p[1] > hi) return 0; /* also stops at the terminator */
    for (int i = 2; i <= more; i++)
      if ((p[i] & 0xc0) != 0x80) return 0;
    p += more + 1;
  }
  return 1;
}

/* Answers EILSEQ (and returns from the operation) unless `text` is UTF-8. */
#define REQUIRE_UTF8(req, text)                                                \
  do {                                                                         \
    if (!valid_utf8(text)) {                                                   \
      fuse_reply_err((req), EILSEQ);                                           \
      return;                                                                  \
    }                                                                          \
  } while (0)

static napi_value caller_uid(fuse_req_t req) { return num(E(req), fuse_req_ctx(req)->uid); }
static napi_value caller_gid(fuse_req_t req) { return num(E(req), fuse_req_ctx(req)->gid); }
static napi_value fh_of(fuse_req_t req, struct fuse_file_info *fi) {
  return num(E(req), fi ? (double)fi->fh : -1);
}

/* ---- low-level operations: decode, hand to JS ------------------------------ */

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  session_t *s = userdata;
  /* Keep the kernel's semantics those of a plain local filesystem:
   * O_TRUNC arrives as a truncate, directory operations are serialised
   * per directory, and the kernel clears set-id bits itself. */
  conn->want &= ~(FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_HANDLE_KILLPRIV |
                  FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  if (conn->capable & FUSE_CAP_READDIRPLUS_AUTO) conn->want |= FUSE_CAP_READDIRPLUS_AUTO;
  if (s->writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  else
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  if (s->max_write) conn->max_write = s->max_write;
  conn->time_gran = 1;
  DISPATCH(s, NULL, OP_INIT, num(s->env, conn->max_write),
           num(s->env, (conn->want & FUSE_CAP_WRITEBACK_CACHE) ? 1 : 0));
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  REQUIRE_UTF8(req, name);
  DISPATCH(S(req), req, OP_LOOKUP, num(E(req), parent), str(E(req), name));
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  DISPATCH(S(req), NULL, OP_FORGET, num(E(req), ino), num(E(req), (double)nlookup));
  fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  for (size_t i = 0; i < count; i++)
    DISPATCH(S(req), NULL, OP_FORGET, num(E(req), forgets[i].ino),
             num(E(req), (double)forgets[i].nlookup));
  fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  DISPATCH(S(req), req, OP_GETATTR, num(E(req), ino), fh_of(req, fi));
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi) {
  napi_env env = E(req);
  DISPATCH(S(req), req, OP_SETATTR, num(env, ino), num(env, to_set), fh_of(req, fi),
           num(env, attr->st_mode), num(env, attr->st_uid), num(env, attr->st_gid),
           num(env, (double)attr->st_size), num(env, (double)attr->st_atim.tv_sec),
           num(env, attr->st_atim.tv_nsec), num(env, (double)attr->st_mtim.tv_sec),
           num(env, attr->st_mtim.tv_nsec));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  DISPATCH(S(req), req, OP_READLINK, num(E(req), ino));
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     dev_t rdev) {
  REQUIRE_UTF8(req, name);
  DISPATCH(S(req), req, OP_MKNOD, num(E(req), parent), str(E(req), name), num(E(req), mode),
           num(E(req), (double)rdev), caller_uid(req), caller_gid(req));
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  REQUIRE_UTF8(req, name);
  DISPATCH(S(req), req, OP_MKDIR, num(E(req), parent), str(E(req), name), num(E(req), mode),
           caller_uid(req), caller_gid(req));
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  REQUIRE_UTF8(req, name);
  DISPATCH(S(req), req, OP_UNLINK, num(E(req), parent), str(E(req), name));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  REQUIRE_UTF8(req, name);
  DISPATCH(S(req), req, OP_RMDIR, num(E(req), parent), str(E(req), name));
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  REQUIRE_UTF8(req, link);
  REQUIRE_UTF8(req, name);
  DISPATCH(S(req), req, OP_SYMLINK, str(E(req), link), num(E(req), parent), str(E(req), name),
           caller_uid(req), caller_gid(req));
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags) {
  REQUIRE_UTF8(req, name);
  REQUIRE_UTF8(req, newname);
  DISPATCH(S(req), req, OP_RENAME, num(E(req), parent), str(E(req), name),
           num(E(req), newparent), str(E(req), newname), num(E(req), flags));
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  REQUIRE_UTF8(req, newname);
  DISPATCH(S(req), req, OP_LINK, num(E(req), ino), num(E(req), newparent),
           str(E(req), newname));
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  DISPATCH(S(req), req, OP_OPEN, num(E(req), ino), num(E(req), fi->flags));
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi) {
  DISPATCH_SIZED(S(req), req, OP_READ, size, num(E(req), ino), num(E(req), (double)size),
           num(E(req), (double)off), fh_of(req, fi));
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  napi_env env = E(req);
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value data;
  void *copy;
  /* The receive buffer is reused for the next request: the data must be copied. */
  if (napi_create_buffer_copy(env, size, buf, &copy, &data) != napi_ok) {
    napi_close_handle_scope(env, scope);
    fuse_reply_err(req, ENOMEM);
    return;
  }
  napi_value args[] = {num(env, ino), data, num(env, (double)off), fh_of(req, fi)};
  call_js(S(req), req, OP_WRITE, size, 4, args); /* req may be answered (freed) from here on */
  napi_close_handle_scope(env, scope);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  DISPATCH(S(req), req, OP_RELEASE, num(E(req), ino), fh_of(req, fi));
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  DISPATCH(S(req), req, OP_FSYNC, num(E(req), ino), num(E(req), datasync), fh_of(req, fi));
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  DISPATCH(S(req), req, OP_FSYNCDIR, num(E(req), ino), num(E(req), datasync), fh_of(req, fi));
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  DISPATCH(S(req), req, OP_OPENDIR, num(E(req), ino));
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi) {
  DISPATCH_SIZED(S(req), req, OP_READDIR, size, num(E(req), ino), num(E(req), (double)size),
           num(E(req), (double)off), fh_of(req, fi));
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi) {
  DISPATCH_SIZED(S(req), req, OP_READDIRPLUS, size, num(E(req), ino), num(E(req), (double)size),
           num(E(req), (double)off), fh_of(req, fi));
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  DISPATCH(S(req), req, OP_RELEASEDIR, num(E(req), ino), fh_of(req, fi));
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  DISPATCH(S(req), req, OP_STATFS, num(E(req), ino));
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags) {
  REQUIRE_UTF8(req, name);
  napi_env env = E(req);
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value data;
  void *copy;
  if (napi_create_buffer_copy(env, size, size ? value : "", &copy, &data) != napi_ok) {
    napi_close_handle_scope(env, scope);
    fuse_reply_err(req, ENOMEM);
    return;
  }
  napi_value args[] = {num(env, ino), str(env, name), data, num(env, flags)};
  call_js(S(req), req, OP_SETXATTR, 0, 4, args);
  napi_close_handle_scope(env, scope);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  REQUIRE_UTF8(req, name);
  /* Only user.* attributes exist here. The kernel asks for security.capability
   * before every write; answering in C saves a trip through JS. */
  if (strncmp(name, "user.", 5) != 0) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  DISPATCH_SIZED(S(req), req, OP_GETXATTR, size, num(E(req), ino), str(E(req), name),
                 num(E(req), (double)size));
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  DISPATCH_SIZED(S(req), req, OP_LISTXATTR, size, num(E(req), ino), num(E(req), (double)size));
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  REQUIRE_UTF8(req, name);
  DISPATCH(S(req), req, OP_REMOVEXATTR, num(E(req), ino), str(E(req), name));
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  DISPATCH(S(req), req, OP_ACCESS, num(E(req), ino), num(E(req), mask));
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi) {
  REQUIRE_UTF8(req, name);
  DISPATCH(S(req), req, OP_CREATE, num(E(req), parent), str(E(req), name), num(E(req), mode),
           num(E(req), fi->flags), caller_uid(req), caller_gid(req));
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi) {
  DISPATCH(S(req), req, OP_FALLOCATE, num(E(req), ino), num(E(req), mode),
           num(E(req), (double)offset), num(E(req), (double)length), fh_of(req, fi));
}

/* The kernel asks only for SEEK_DATA and SEEK_HOLE; it answers the other whences itself. */
static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
                     struct fuse_file_info *fi) {
  DISPATCH(S(req), req, OP_LSEEK, num(E(req), ino), num(E(req), (double)off), num(E(req), whence),
           fh_of(req, fi));
}

static const struct fuse_lowlevel_ops operations = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    /* No .flush: writes reach the lower file before they are answered and
     * locks are the kernel's, so a close has nothing to wait for. libfuse
     * answers the first FLUSH with ENOSYS and the kernel sends no more,
     * which saves a round trip on every close(2). */
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .access = op_access,
    .create = op_create,
    .fallocate = op_fallocate,
    .lseek = op_lseek,
};

/* ---- the session on the event loop ----------------------------------------- */

/* The session struct is freed once the uv handle is closed, JS has let go of
 * it and libfuse's session is gone (late answers still reach it until then). */
static void release_session(session_t *s) {
  if (s->poll_closed && s->finalized && !s->se) free(s);
}

static void on_poll_closed(uv_handle_t *handle) {
  session_t *s = handle->data;
  free(s->buf.mem);
  s->buf.mem = NULL;
  s->poll_closed = 1;
  release_session(s);
}

/* Unmounts (if still mounted) and frees the libfuse session; JS keeps the shell. */
static void close_session(session_t *s) {
  if (s->closed) return;
  s->closed = 1;
  uv_poll_stop(&s->poll);
  fuse_session_exit(s->se); /* late answers then fail quietly */
  fuse_session_unmount(s->se);
  /* Answers still to come from JS go to a closed descriptor, harmlessly,
   * but they free their requests through the session: keep it until then. */
  if (s->outstanding > 0) {
    s->destroy_pending = 1;
  } else {
    fuse_session_destroy(s->se);
    s->se = NULL;
  }
  uv_close((uv_handle_t *)&s->poll, on_poll_closed);
  napi_delete_reference(s->env, s->dispatch_ref);
  /* Served no more: the JS object may now be collected. */
  uint32_t refs;
  napi_reference_unref(s->env, s->resource_ref, &refs);
}

/* Reads and processes up to a batch of requests. Returns 1 if the session ended. */
static int process_batch(session_t *s, int *processed) {
  for (int i = 0; i < MAX_REQUESTS_PER_WAKEUP; i++) {
    int res = fuse_session_receive_buf(s->se, &s->buf);
    if (res == -EAGAIN) return 0;
    if (res == -EINTR) continue;
    if (res <= 0 || fuse_session_exited(s->se)) return 1; /* unmounted, or aborted */
    fuse_session_process_buf(s->se, &s->buf);
    (*processed)++;
  }
  return 0;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Waits up to spin_ns for the next request without sleeping (see on_readable). */
static int request_soon(session_t *s) {
  if (!s->spin_ns) return 0;
  struct pollfd pfd = {.fd = fuse_session_fd(s->se), .events = POLLIN};
  uint64_t deadline = now_ns() + s->spin_ns;
  do {
    if (poll(&pfd, 1, 0) > 0) return 1;
  } while (now_ns() < deadline);
  return 0;
}

/*
 * One wake-up of the event loop. Requests are processed in batches; the
 * replies of a batch go out when its callback scope closes (promise
 * continuations run then). A program working through files sends its next
 * request a few microseconds after our reply, while a sleeping thread on a
 * virtual machine takes tens of microseconds to wake: so after a busy batch
 * the loop keeps polling for a short while before it goes back to sleep
 * (Go's scheduler spins for the same reason).
 */
static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  session_t *s = handle->data;
  napi_env env = s->env;
  int exited = status != 0;
  int rounds = 0;

  while (!exited && !s->close_requested) {
    napi_handle_scope scope;
    napi_callback_scope callback_scope;
    napi_value resource;
    int processed = 0;
    napi_open_handle_scope(env, &scope);
    napi_get_reference_value(env, s->resource_ref, &resource);
    napi_get_reference_value(env, s->dispatch_ref, &s->dispatch);
    napi_open_callback_scope(env, resource, s->async_context, &callback_scope);
    s->processing = 1;
    exited = process_batch(s, &processed);
    s->processing = 0;
    napi_close_callback_scope(env, callback_scope);
    napi_close_handle_scope(env, scope);
    if (exited || processed == 0 || ++rounds >= MAX_ROUNDS_PER_WAKEUP || !request_soon(s)) break;
  }
  if (exited || s->close_requested) {
    int notify = exited && !s->close_requested;
    napi_handle_scope scope;
    napi_callback_scope callback_scope;
    napi_value resource, dispatch;
    napi_open_handle_scope(env, &scope);
    napi_get_reference_value(env, s->resource_ref, &resource);
    napi_get_reference_value(env, s->dispatch_ref, &dispatch);
    napi_open_callback_scope(env, resource, s->async_context, &callback_scope);
    close_session(s);
    if (notify) {
      napi_value argv[2], global, result;
      argv[0] = num(env, OP_EXIT);
      napi_get_null(env, &argv[1]);
      napi_get_global(env, &global);
      if (napi_call_function(env, global, dispatch, 2, argv, &result) != napi_ok) {
        napi_value exception;
        napi_get_and_clear_last_exception(env, &exception);
      }
    }
    napi_close_callback_scope(env, callback_scope);
    napi_close_handle_scope(env, scope);
  }
}

/* Runs only after close_session (the resource reference is strong until then). */
static void finalize_session(napi_env env, void *data, void *hint) {
  (void)hint;
  session_t *s = data;
  napi_delete_reference(env, s->resource_ref);
  napi_async_destroy(env, s->async_context);
  s->finalized = 1;
  release_session(s);
}

static int get_string(napi_env env, napi_value v, char *out, size_t cap) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, out, cap, &len) != napi_ok) return -1;
  return len + 1 >= cap ? -1 : 0;
}

/* libfuse reports why a mount failed through its log; keep the last error for the exception. */
static char last_error[512];

static void capture_log(enum fuse_log_level level, const char *fmt, va_list ap) {
  if (level > FUSE_LOG_ERR) return;
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  size_t len = strlen(last_error);
  while (len > 0 && (last_error[len - 1] == '\n' || last_error[len - 1] == ' ')) last_error[--len] = 0;
}

static napi_value mount_error(napi_env env, const char *code, const char *fallback) {
  const char *message = last_error[0] ? last_error : fallback;
  if (strncmp(message, "fuse: ", 6) == 0) message += 6;
  napi_throw_error(env, code, message);
  return NULL;
}

#ifdef CRYPTMOUNT_FAULT_INJECTION
/* Test builds only (a separate addon, see scripts/build-native.mjs):
 * CRYPTMOUNT_FUSE_FAIL_AT=<step> makes that step of mount() fail. */
static int fault(const char *step) {
  const char *at = getenv("CRYPTMOUNT_FUSE_FAIL_AT");
  return at && strcmp(at, step) == 0;
}
#else
#define fault(step) 0
#endif

/* Undoes the Node-API part of a mount that failed. */
static void undo_js(session_t *s) {
  if (s->async_context) napi_async_destroy(s->env, s->async_context);
  if (s->resource_ref) napi_delete_reference(s->env, s->resource_ref);
  if (s->dispatch_ref) napi_delete_reference(s->env, s->dispatch_ref);
}

/*
 * mount(mountpoint, options, dispatch, entryTimeout, attrTimeout, maxWrite, writeback, spinMicroseconds) -> session
 *
 * Everything that can fail without a mount is done before fuse_session_mount;
 * a failure after it unmounts and destroys the session before throwing, so a
 * failed mount() never leaves a mount behind with nobody serving it.
 */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8], session_value, resource_name;
  napi_valuetype dispatch_type = napi_undefined;
  char mountpoint[4096], options[8192];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc >= 3) napi_typeof(env, argv[2], &dispatch_type);
  if (argc < 8 || get_string(env, argv[0], mountpoint, sizeof mountpoint) ||
      get_string(env, argv[1], options, sizeof options) || dispatch_type != napi_function) {
    napi_throw_type_error(env, NULL, "mount(mountpoint, options, dispatch, ...)");
    return NULL;
  }
  uv_loop_t *loop;
  CHECK(env, napi_get_uv_event_loop(env, &loop));
  session_t *s = calloc(1, sizeof *s);
  if (!s) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  s->env = env;
  s->table = table_of(env);
  s->entry_timeout = dbl(env, argv[3]);
  s->attr_timeout = dbl(env, argv[4]);
  s->max_write = (unsigned)dbl(env, argv[5]);
  s->writeback = dbl(env, argv[6]) != 0;
  s->spin_ns = (uint64_t)(dbl(env, argv[7]) * 1000);
  if (fault("js") || !s->table || napi_create_object(env, &session_value) != napi_ok ||
      napi_create_string_utf8(env, "cryptmount:fuse", NAPI_AUTO_LENGTH, &resource_name) !=
          napi_ok ||
      napi_create_reference(env, argv[2], 1, &s->dispatch_ref) != napi_ok ||
      napi_create_reference(env, session_value, 1, &s->resource_ref) != napi_ok ||
      napi_async_init(env, session_value, resource_name, &s->async_context) != napi_ok) {
    undo_js(s);
    free(s);
    napi_throw_error(env, NULL, "cryptmount fuse3 binding: cannot set up the session");
    return NULL;
  }

  last_error[0] = 0;
  char *fuse_argv[] = {"cryptmount", "-o", options, NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, fuse_argv);
  s->se = fuse_session_new(&args, &operations, sizeof operations, s);
  if (!s->se) {
    undo_js(s);
    free(s);
    return mount_error(env, "EINVAL", "invalid FUSE options");
  }
  if (fault("mount") || fuse_session_mount(s->se, mountpoint) != 0) {
    fuse_session_destroy(s->se);
    undo_js(s);
    free(s);
    return mount_error(env, "EMOUNT", "the kernel refused the mount");
  }

  /* Mounted: from here on, every failure unmounts first. */
  int fd = fuse_session_fd(s->se);
  int flags = fcntl(fd, F_GETFL);
  const char *failed = NULL;
  if (fault("nonblock") || flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
      fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
    failed = "cannot make /dev/fuse non-blocking";
  else if (fault("poll") || uv_poll_init(loop, &s->poll, fd) != 0)
    failed = "cannot watch /dev/fuse";
  if (failed) {
    fuse_session_unmount(s->se);
    fuse_session_destroy(s->se);
    undo_js(s);
    free(s);
    napi_throw_error(env, "EMOUNT", failed);
    return NULL;
  }
  s->poll.data = s;
  if (fault("start") || uv_poll_start(&s->poll, UV_READABLE, on_readable) != 0)
    failed = "cannot watch /dev/fuse";
  else if (fault("wrap") ||
           napi_wrap(env, session_value, s, finalize_session, NULL, NULL) != napi_ok)
    failed = "cryptmount fuse3 binding: napi_wrap";
  if (failed) {
    /* The poll handle exists: it is closed (stopped at once, before its
     * descriptor goes) and frees the session when libuv is done with it. */
    uv_poll_stop(&s->poll);
    fuse_session_unmount(s->se);
    fuse_session_destroy(s->se);
    s->se = NULL;
    undo_js(s);
    s->closed = 1;
    s->finalized = 1; /* no JS object owns it */
    uv_close((uv_handle_t *)&s->poll, on_poll_closed);
    napi_throw_error(env, "EMOUNT", failed);
    return NULL;
  }
  return session_value;
}

static session_t *session_of(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_unwrap(env, v, &data) != napi_ok) return NULL;
  return data;
}

/* unmount(session): unmounts and stops serving; safe to call twice. */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session_t *s = argc ? session_of(env, argv[0]) : NULL;
  if (!s) {
    napi_throw_type_error(env, NULL, "unmount(session)");
    return NULL;
  }
  if (s->processing)
    s->close_requested = 1; /* inside a dispatch: close after the batch */
  else
    close_session(s);
  return NULL;
}

/* ---- replies ----------------------------------------------------------------- */

/* Called after every answer to a request that went to JS. */
static void answered(session_t *s) {
  if (--s->outstanding > 0 || !s->destroy_pending) return;
  s->destroy_pending = 0;
  fuse_session_destroy(s->se);
  s->se = NULL;
  release_session(s);
}

static napi_value reply_failed(session_t *s, fuse_req_t req, int err) {
  fuse_reply_err(req, err);
  answered(s);
  return boolean(s->env, 1);
}

static void fill_stat(const double *a, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = (ino_t)u64(a[0]);
  st->st_mode = (mode_t)u64(a[1]);
  st->st_nlink = (nlink_t)u64(a[2]);
  st->st_uid = (uid_t)u64(a[3]);
  st->st_gid = (gid_t)u64(a[4]);
  st->st_rdev = (dev_t)u64(a[5]);
  st->st_size = (off_t)i64(a[6]);
  st->st_blksize = (blksize_t)i64(a[7]);
  st->st_blocks = (blkcnt_t)i64(a[8]);
  st->st_atim.tv_sec = (time_t)i64(a[9]);
  st->st_atim.tv_nsec = (long)i64(a[10]);
  st->st_mtim.tv_sec = (time_t)i64(a[11]);
  st->st_mtim.tv_nsec = (long)i64(a[12]);
  st->st_ctim.tv_sec = (time_t)i64(a[13]);
  st->st_ctim.tv_nsec = (long)i64(a[14]);
}

/* Reads `count` attribute records from a Float64Array; NULL if it is too short. */
static const double *attrs_of(napi_env env, napi_value v, size_t count) {
  static const double none[ATTR_FIELDS];
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_float64_array || length < count * ATTR_FIELDS)
    return NULL;
  return count ? data : none; /* an empty array may have no storage at all */
}

/*
 * Every reply starts here: the request argv[0] names is taken out of the
 * table, so nothing can answer it again. Not live (never issued, answered
 * already, not a number): nothing is sent and the reply returns false.
 * Too few arguments: the request gets EIO and the call throws a TypeError.
 */
#define REPLY_ARGS(n)                                                          \
  size_t argc = (n);                                                           \
  napi_value argv[(n)];                                                        \
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));            \
  live_t live_;                                                                \
  if (!take_request(env, argv[0], &live_)) return boolean(env, 0);             \
  fuse_req_t req = live_.req;                                                  \
  session_t *rs = live_.s;                                                     \
  if (argc < (n)) {                                                            \
    reply_failed(rs, req, EIO);                                                \
    napi_throw_type_error(env, NULL, "missing reply arguments");               \
    return NULL;                                                               \
  }

/* replyErr(req, errno) -> answered. 0 is success; an errno outside 1..511
 * (which the kernel would refuse, leaving the caller waiting forever) is EIO. */
static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  REPLY_ARGS(2);
  double err = dbl(env, argv[1]);
  return reply_failed(rs, req, err >= 0 && err < 512 && err == (int)err ? (int)err : EIO);
}

static void entry_of(session_t *s, double nodeid, const double *attr,
                     struct fuse_entry_param *e) {
  memset(e, 0, sizeof *e);
  e->ino = (fuse_ino_t)u64(nodeid);
  e->generation = 1;
  fill_stat(attr, &e->attr);
  e->attr_timeout = s->attr_timeout;
  e->entry_timeout = s->entry_timeout;
}

/* replyEntry(req, nodeid, attr) -> answered */
static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  REPLY_ARGS(3);
  const double *attr = attrs_of(env, argv[2], 1);
  if (!attr) return reply_failed(rs, req, EIO);
  struct fuse_entry_param e;
  entry_of(rs, dbl(env, argv[1]), attr, &e);
  fuse_reply_entry(req, &e);
  answered(rs);
  return boolean(env, 1);
}

static void open_flags(struct fuse_file_info *fi, double fh, int direct_io) {
  memset(fi, 0, sizeof *fi);
  fi->fh = u64(fh);
  fi->direct_io = direct_io ? 1 : 0;
}

/* replyCreate(req, nodeid, attr, fh, directIo) -> answered */
static napi_value js_reply_create(napi_env env, napi_callback_info info) {
  REPLY_ARGS(5);
  const double *attr = attrs_of(env, argv[2], 1);
  if (!attr) return reply_failed(rs, req, EIO);
  struct fuse_entry_param e;
  struct fuse_file_info fi;
  entry_of(rs, dbl(env, argv[1]), attr, &e);
  open_flags(&fi, dbl(env, argv[3]), dbl(env, argv[4]) != 0);
  fuse_reply_create(req, &e, &fi);
  answered(rs);
  return boolean(env, 1);
}

/* replyAttr(req, attr) -> answered */
static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  REPLY_ARGS(2);
  const double *attr = attrs_of(env, argv[1], 1);
  if (!attr) return reply_failed(rs, req, EIO);
  struct stat st;
  fill_stat(attr, &st);
  fuse_reply_attr(req, &st, rs->attr_timeout);
  answered(rs);
  return boolean(env, 1);
}

/* replyOpen(req, fh, directIo) -> answered */
static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  REPLY_ARGS(3);
  struct fuse_file_info fi;
  open_flags(&fi, dbl(env, argv[1]), dbl(env, argv[2]) != 0);
  fuse_reply_open(req, &fi);
  answered(rs);
  return boolean(env, 1);
}

/* replyReadlink(req, target) -> answered. A target the kernel cannot take
 * (longer than PATH_MAX - 1 bytes: it would answer EIO) is ENAMETOOLONG; one
 * with a NUL (it would arrive cut short) or empty is EIO. */
static napi_value js_reply_readlink(napi_env env, napi_callback_info info) {
  REPLY_ARGS(2);
  size_t len = 0;
  if (napi_get_value_string_utf8(env, argv[1], NULL, 0, &len) != napi_ok)
    return reply_failed(rs, req, EIO);
  if (len >= PATH_MAX) return reply_failed(rs, req, ENAMETOOLONG);
  char target[PATH_MAX];
  napi_get_value_string_utf8(env, argv[1], target, sizeof target, &len);
  if (len == 0 || strlen(target) != len) return reply_failed(rs, req, EIO);
  fuse_reply_readlink(req, target);
  answered(rs);
  return boolean(env, 1);
}

/* replyBuf(req, buffer, length) -> answered */
static napi_value js_reply_buf(napi_env env, napi_callback_info info) {
  REPLY_ARGS(3);
  void *data = NULL;
  size_t size = 0;
  if (napi_get_buffer_info(env, argv[1], &data, &size) != napi_ok)
    return reply_failed(rs, req, EIO);
  double length = dbl(env, argv[2]);
  if (length >= 0 && (size_t)length < size) size = (size_t)length;
  /* Never more than the kernel asked for (it would answer EIO): a read is
   * cut short, an attribute value or list that does not fit is ERANGE. */
  if (size > live_.size) {
    if (live_.op != OP_READ) return reply_failed(rs, req, ERANGE);
    size = live_.size;
  }
  fuse_reply_buf(req, data, size);
  answered(rs);
  return boolean(env, 1);
}

/* replyWrite(req, count) -> answered; a count above what was sent is EIO. */
static napi_value js_reply_write(napi_env env, napi_callback_info info) {
  REPLY_ARGS(2);
  double count = dbl(env, argv[1]);
  if (!(count >= 0 && count <= (double)live_.size)) return reply_failed(rs, req, EIO);
  fuse_reply_write(req, (size_t)count);
  answered(rs);
  return boolean(env, 1);
}

/* replyLseek(req, offset) -> answered */
static napi_value js_reply_lseek(napi_env env, napi_callback_info info) {
  REPLY_ARGS(2);
  double offset = dbl(env, argv[1]);
  if (!(offset >= 0 && offset <= 9007199254740991.0)) return reply_failed(rs, req, EIO);
  fuse_reply_lseek(req, (off_t)offset);
  answered(rs);
  return boolean(env, 1);
}

/* replyXattrSize(req, size) -> answered */
static napi_value js_reply_xattr_size(napi_env env, napi_callback_info info) {
  REPLY_ARGS(2);
  fuse_reply_xattr(req, (size_t)u64(dbl(env, argv[1])));
  answered(rs);
  return boolean(env, 1);
}

/* replyStatfs(req, [bsize, frsize, blocks, bfree, bavail, files, ffree, favail, namemax]) -> answered */
static napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
  REPLY_ARGS(2);
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_float64_array || length < STATFS_FIELDS)
    return reply_failed(rs, req, EIO);
  const double *f = data;
  struct statvfs st;
  memset(&st, 0, sizeof st);
  st.f_bsize = (unsigned long)u64(f[0]);
  st.f_frsize = (unsigned long)u64(f[1]);
  st.f_blocks = (fsblkcnt_t)u64(f[2]);
  st.f_bfree = (fsblkcnt_t)u64(f[3]);
  st.f_bavail = (fsblkcnt_t)u64(f[4]);
  st.f_files = (fsfilcnt_t)u64(f[5]);
  st.f_ffree = (fsfilcnt_t)u64(f[6]);
  st.f_favail = (fsfilcnt_t)u64(f[7]);
  st.f_namemax = (unsigned long)u64(f[8]);
  fuse_reply_statfs(req, &st);
  answered(rs);
  return boolean(env, 1);
}

/*
 * replyDir(req, size, firstOffset, names, attrs, nodeids) -> entries sent,
 * or -1 if the request was not live. Entry i gets offset firstOffset + i + 1.
 * With nodeids (a Float64Array) the reply is READDIRPLUS; each sent entry
 * with a non-zero nodeid counts as one lookup, which the caller must record.
 * The reply holds at most what the kernel asked for. It ends before a name
 * no directory can hold (not a string, empty, over NAME_MAX bytes, with '/'
 * or NUL): the kernel would refuse the whole reply, or a name cut short
 * would alias another. If that is the first entry, the answer is EIO, so
 * a listing fails rather than silently stopping there.
 */
static napi_value js_reply_dir(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  live_t live;
  if (!take_request(env, argv[0], &live)) return num(env, -1);
  fuse_req_t req = live.req;
  session_t *rs = live.s;
  if (argc < 6) {
    reply_failed(rs, req, EIO);
    napi_throw_type_error(env, NULL, "missing reply arguments");
    return NULL;
  }
  size_t size = (size_t)u64(dbl(env, argv[1]));
  if (size > live.size) size = live.size;
  int64_t first = i64(dbl(env, argv[2]));
  if (first < 0 || first >= (int64_t)1 << 53) {
    reply_failed(rs, req, EIO); /* not an offset this binding handed out */
    return num(env, 0);
  }
  uint32_t count = 0;
  if (napi_get_array_length(env, argv[3], &count) != napi_ok) {
    reply_failed(rs, req, EIO); /* not an array: never "the end of the directory" */
    return num(env, 0);
  }
  const double *attrs = attrs_of(env, argv[4], count);
  napi_valuetype nodeid_type;
  napi_typeof(env, argv[5], &nodeid_type);
  const double *nodeids = NULL;
  if (nodeid_type == napi_object) {
    napi_typedarray_type type;
    size_t length;
    void *data;
    if (napi_get_typedarray_info(env, argv[5], &type, &length, &data, NULL, NULL) == napi_ok &&
        type == napi_float64_array && length >= count)
      nodeids = count ? data : attrs;
    else
      attrs = NULL;
  }
  char *buf = size ? calloc(1, size) : NULL;
  if (!attrs || (size && !buf)) {
    free(buf);
    reply_failed(rs, req, attrs ? ENOMEM : EIO);
    return num(env, 0);
  }
  size_t used = 0;
  uint32_t sent = 0;
  char name[NAME_MAX + 1];
  for (uint32_t i = 0; i < count; i++) {
    napi_value item;
    size_t len = 0;
    if (napi_get_element(env, argv[3], i, &item) != napi_ok ||
        napi_get_value_string_utf8(env, item, NULL, 0, &len) != napi_ok || len == 0 ||
        len > NAME_MAX ||
        napi_get_value_string_utf8(env, item, name, sizeof name, &len) != napi_ok ||
        strlen(name) != len || memchr(name, '/', len)) {
      if (i == 0) {
        free(buf);
        reply_failed(rs, req, EIO);
        return num(env, 0);
      }
      break;
    }
    off_t next = (off_t)(first + i + 1);
    size_t need;
    if (nodeids) {
      struct fuse_entry_param e;
      entry_of(rs, nodeids[i], attrs + i * ATTR_FIELDS, &e);
      need = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, next);
    } else {
      struct stat st;
      fill_stat(attrs + i * ATTR_FIELDS, &st);
      need = fuse_add_direntry(req, buf + used, size - used, name, &st, next);
    }
    if (need > size - used) break;
    used += need;
    sent++;
  }
  fuse_reply_buf(req, buf, used);
  answered(rs);
  free(buf);
  return num(env, sent);
}

static napi_value init_module(napi_env env, napi_value exports) {
  fuse_set_log_func(capture_log);
  struct {
    const char *name;
    napi_callback fn;
  } functions[] = {
      {"mount", js_mount},
      {"unmount", js_unmount},
      {"replyErr", js_reply_err},
      {"replyEntry", js_reply_entry},
      {"replyCreate", js_reply_create},
      {"replyAttr", js_reply_attr},
      {"replyOpen", js_reply_open},
      {"replyReadlink", js_reply_readlink},
      {"replyBuf", js_reply_buf},
      {"replyWrite", js_reply_write},
      {"replyLseek", js_reply_lseek},
      {"replyXattrSize", js_reply_xattr_size},
      {"replyStatfs", js_reply_statfs},
      {"replyDir", js_reply_dir},
  };
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value fn;
    CHECK(env, napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn,
                                    NULL, &fn));
    CHECK(env, napi_set_named_property(env, exports, functions[i].name, fn));
  }
  CHECK(env, napi_set_named_property(env, exports, "version", num(env, BINDING_VERSION)));
  napi_value ops;
  CHECK(env, napi_create_object(env, &ops));
#define OP_EXPORT(name) CHECK(env, napi_set_named_property(env, ops, #name, num(env, OP_##name)));
  OPS(OP_EXPORT)
#undef OP_EXPORT
  CHECK(env, napi_object_freeze(env, ops));
  CHECK(env, napi_set_named_property(env, exports, "ops", ops));
  table_t *table = calloc(1, sizeof *table);
  if (!table) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  if (napi_set_instance_data(env, table, finalize_table, NULL) != napi_ok) {
    free(table);
    napi_throw_error(env, NULL, "cryptmount fuse3 binding: napi_set_instance_data");
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
