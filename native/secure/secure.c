/*
 * cryptmount's process hardening: the few system calls Node has no API for.
 * Built to build/cryptmount_secure.node by scripts/build-native.mjs (one
 * `cc -shared` call, Node's headers, no library). Loaded by
 * src/mount/hardening.ts; the mount server calls it before it receives any key.
 *
 *   disableCoreDumps()        RLIMIT_CORE 0 and prctl(PR_SET_DUMPABLE, 0): no
 *                             core file, no ptrace attach by the same user,
 *                             /proc/PID/mem and friends owned by root. Throws
 *                             on failure.
 *   isDumpable() -> boolean   prctl(PR_GET_DUMPABLE), for tests and logs.
 *   coreLimit() -> number     the soft RLIMIT_CORE (-1: unlimited).
 *   lockMemory(buf) -> bool   mlock(2) the pages under a Buffer or typed
 *                             array; false when RLIMIT_MEMLOCK (or the lack
 *                             of CAP_IPC_LOCK) does not allow it. Pages stay
 *                             locked until the process exits.
 *   raiseOpenFileLimit() -> number
 *                             soft RLIMIT_NOFILE raised to the hard limit;
 *                             returns the soft limit now in force.
 *   peerCredentials(fd) -> {pid, uid, gid}
 *                             getsockopt(SO_PEERCRED) of a connected Unix
 *                             socket: who is on the other end (the key agent
 *                             refuses other users). Throws on failure. Added
 *                             without a version change: callers test for it.
 *   lockExclusive(fd)         flock(fd, LOCK_EX), waiting (EINTR retried): the
 *                             per-user session counter of `cryptmount home`.
 *                             Throws on failure. Added without a version
 *                             change, like peerCredentials.
 *   tryLock(fd, exclusive) -> boolean | null
 *                             flock(fd, LOCK_EX or LOCK_SH | LOCK_NB): false
 *                             when another holder conflicts (EWOULDBLOCK),
 *                             null when the filesystem cannot lock;
 *                             the volume lock between mounts and the
 *                             commands that rewrite a volume. Throws on other
 *                             failures. Added without a version change.
 */
#define _GNU_SOURCE /* struct ucred */
#include <errno.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SECURE_VERSION 1

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", what, strerror(err));
  napi_throw_error(env, NULL, message);
  return NULL;
}

static napi_value boolean(napi_env env, int value) {
  napi_value out;
  napi_get_boolean(env, value != 0, &out);
  return out;
}

static napi_value number(napi_env env, double value) {
  napi_value out;
  napi_create_double(env, value, &out);
  return out;
}

static napi_value disable_core_dumps(napi_env env, napi_callback_info info) {
  (void)info;
  struct rlimit none = {0, 0};
  if (setrlimit(RLIMIT_CORE, &none) != 0) return throw_errno(env, "setrlimit(RLIMIT_CORE)", errno);
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    return throw_errno(env, "prctl(PR_SET_DUMPABLE)", errno);
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

static napi_value is_dumpable(napi_env env, napi_callback_info info) {
  (void)info;
  int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
  if (dumpable < 0) return throw_errno(env, "prctl(PR_GET_DUMPABLE)", errno);
  return boolean(env, dumpable);
}

static napi_value core_limit(napi_env env, napi_callback_info info) {
  (void)info;
  struct rlimit limit;
  if (getrlimit(RLIMIT_CORE, &limit) != 0) return throw_errno(env, "getrlimit(RLIMIT_CORE)", errno);
  return number(env, limit.rlim_cur == RLIM_INFINITY ? -1 : (double)limit.rlim_cur);
}

static size_t element_size(napi_typedarray_type type) {
  switch (type) {
    case napi_int16_array:
    case napi_uint16_array:
      return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array:
      return 4;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array:
      return 8;
    default:
      return 1;
  }
}

static napi_value lock_memory(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) {
    napi_throw_type_error(env, NULL, "lockMemory(buffer): a Buffer or typed array is required");
    return NULL;
  }
  void *data = NULL;
  size_t length;
  bool is_typedarray = false;
  if (napi_is_typedarray(env, argv[0], &is_typedarray) != napi_ok || !is_typedarray) {
    napi_throw_type_error(env, NULL, "lockMemory(buffer): a Buffer or typed array is required");
    return NULL;
  }
  napi_typedarray_type type;
  size_t elements = 0;
  napi_value arraybuffer;
  size_t offset = 0;
  if (napi_get_typedarray_info(env, argv[0], &type, &elements, &data, &arraybuffer, &offset) !=
      napi_ok) {
    napi_throw_error(env, NULL, "lockMemory: cannot read the buffer");
    return NULL;
  }
  length = elements * element_size(type);
  if (length == 0 || data == NULL) return boolean(env, 1);
  if (mlock(data, length) == 0) return boolean(env, 1);
  if (errno == ENOMEM || errno == EPERM || errno == EAGAIN) return boolean(env, 0);
  return throw_errno(env, "mlock", errno);
}

static napi_value raise_open_file_limit(napi_env env, napi_callback_info info) {
  (void)info;
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
    return throw_errno(env, "getrlimit(RLIMIT_NOFILE)", errno);
  if (limit.rlim_cur != limit.rlim_max) {
    rlim_t wanted = limit.rlim_max;
    limit.rlim_cur = wanted;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0)
      return throw_errno(env, "setrlimit(RLIMIT_NOFILE)", errno);
  }
  return number(env, limit.rlim_cur == RLIM_INFINITY ? -1 : (double)limit.rlim_cur);
}

/* The one argument of an fd-taking function; -1 with a TypeError pending when it is not one. */
static int32_t fd_argument(napi_env env, napi_callback_info info, const char *usage) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, usage);
    return -1;
  }
  return fd;
}

static napi_value peer_credentials(napi_env env, napi_callback_info info) {
  int32_t fd = fd_argument(env, info, "peerCredentials(fd): a file descriptor is required");
  if (fd < 0) return NULL;
  struct ucred cred;
  socklen_t length = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0)
    return throw_errno(env, "getsockopt(SO_PEERCRED)", errno);
  napi_value out;
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "pid", number(env, (double)cred.pid));
  napi_set_named_property(env, out, "uid", number(env, (double)cred.uid));
  napi_set_named_property(env, out, "gid", number(env, (double)cred.gid));
  return out;
}

static napi_value lock_exclusive(napi_env env, napi_callback_info info) {
  int32_t fd = fd_argument(env, info, "lockExclusive(fd): a file descriptor is required");
  if (fd < 0) return NULL;
  int r;
  do r = flock(fd, LOCK_EX);
  while (r != 0 && errno == EINTR);
  if (r != 0) return throw_errno(env, "flock", errno);
  return NULL;
}

static napi_value try_lock(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd = -1;
  bool exclusive = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_get_value_bool(env, argv[1], &exclusive) != napi_ok) {
    napi_throw_type_error(env, NULL, "tryLock(fd, exclusive): a file descriptor and a boolean");
    return NULL;
  }
  int r;
  do r = flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB);
  while (r != 0 && errno == EINTR);
  if (r == 0) return boolean(env, 1);
  if (errno == EWOULDBLOCK) return boolean(env, 0);
  if (errno == ENOLCK || errno == EOPNOTSUPP || errno == ENOSYS) {
    napi_value none; /* this filesystem cannot lock: null */
    napi_get_null(env, &none);
    return none;
  }
  return throw_errno(env, "flock", errno);
}

static napi_value init_module(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"disableCoreDumps", NULL, disable_core_dumps, NULL, NULL, NULL, napi_enumerable, NULL},
      {"isDumpable", NULL, is_dumpable, NULL, NULL, NULL, napi_enumerable, NULL},
      {"coreLimit", NULL, core_limit, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lockMemory", NULL, lock_memory, NULL, NULL, NULL, napi_enumerable, NULL},
      {"raiseOpenFileLimit", NULL, raise_open_file_limit, NULL, NULL, NULL, napi_enumerable, NULL},
      {"peerCredentials", NULL, peer_credentials, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lockExclusive", NULL, lock_exclusive, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tryLock", NULL, try_lock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"version", NULL, NULL, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_value version;
  napi_create_uint32(env, SECURE_VERSION, &version);
  properties[sizeof properties / sizeof properties[0] - 1].value = version; /* "version" is last */
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
