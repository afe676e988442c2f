/*
 * cryptmount's native crypto: OpenSSL's EVP (the copy inside the node
 * binary, through Node's bundled headers), never home-made.
 *
 * Two things the JS thread should not do itself:
 *
 *  - Content blocks (docs/format.md §7) of large requests: sealWrite() seals
 *    N blocks with AES-256-GCM and pwrites them, openRead() preads N sealed
 *    blocks and opens them, each as ONE libuv threadpool job, so several
 *    requests use several cores and the JS thread only dispatches. The key
 *    is expanded into an EVP context on the JS thread when the call is made
 *    (the raw key is never copied; a file closed afterwards cannot race the
 *    job) and the context is freed, and so cleansed, when the job ends.
 *    Results are numbers: >= 0 success, < 0 an errno, EBADMSG meaning "a
 *    block failed authentication or the file was shorter than asked": the
 *    JS side then redoes the request on its own path, which names the block
 *    and logs it exactly as before.
 *
 *  - Names (§10, AES-SIV RFC 5297, 64-byte key = AES-256-SIV): a SivKey
 *    object holds the key expanded once (CMAC and CTR contexts) and each
 *    seal/open starts from a copy of it, instead of expanding the key on
 *    every call. OpenSSL 3.0's SIV skips an empty plaintext or associated
 *    data string (so the tag is wrong or final fails): the JS side keeps
 *    those on @noble/ciphers.
 *
 * Contract with JS: src/crypto/native.ts (CRYPTO_VERSION must match).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CRYPTO_VERSION 2
#define KEY_SIZE 32
#define NONCE_SIZE 12
#define TAG_SIZE 16
#define OVERHEAD (NONCE_SIZE + TAG_SIZE)
#define FILE_ID_SIZE 16
#define AAD_SIZE (FILE_ID_SIZE + 8 + 1)
#define SIV_KEY_SIZE 64
#define MAX_AAD 4

/* Fetched once: a legacy EVP_aes_256_gcm() would be fetched again by every init. */
static EVP_CIPHER *aes_gcm, *aes_siv;

/* ---- content blocks (§7) ---------------------------------------------------- */

typedef struct job {
  bool seal;
  int fd;
  EVP_CIPHER_CTX *ctx; /* key set, direction set */
  uint8_t file_id[FILE_ID_SIZE];
  uint64_t first_index;
  uint64_t final_index; /* openRead */
  bool ends_file;       /* sealWrite */
  bool holes;           /* openRead */
  size_t block_size;
  int64_t position;
  uint8_t *plain; /* sealWrite: input; openRead: output (JS Buffers, not owned) */
  size_t plain_len;
  const uint8_t *nonces; /* sealWrite: count * 12 bytes */
  size_t sealed_len;     /* openRead: bytes to read */
  int64_t result;
  napi_ref refs[2];
  napi_async_work work;
  napi_deferred deferred;
} job_t;

/* One sealed-bytes buffer per threadpool thread, kept: a fresh 1 MiB buffer
 * costs 256 page faults, more than the crypto. Holds ciphertext only. */
static __thread uint8_t *scratch;
static __thread size_t scratch_cap;

static uint8_t *scratch_for(size_t len) {
  if (len <= scratch_cap) return scratch;
  uint8_t *grown = realloc(scratch, len);
  if (!grown) return NULL;
  scratch = grown, scratch_cap = len;
  return scratch;
}

static void block_aad(const job_t *j, uint64_t index, bool final, uint8_t aad[AAD_SIZE]) {
  memcpy(aad, j->file_id, FILE_ID_SIZE);
  for (int i = 0; i < 8; i++) aad[FILE_ID_SIZE + i] = (uint8_t)(index >> (56 - 8 * i));
  aad[AAD_SIZE - 1] = final ? 1 : 0;
}

/* nonce | ciphertext | tag of one block; false if OpenSSL failed. */
static bool seal_block(job_t *j, uint64_t index, bool final, const uint8_t *nonce,
                       const uint8_t *in, size_t len, uint8_t *out) {
  uint8_t aad[AAD_SIZE];
  int n;
  block_aad(j, index, final, aad);
  memcpy(out, nonce, NONCE_SIZE);
  return EVP_EncryptInit_ex(j->ctx, NULL, NULL, NULL, nonce) == 1 &&
         EVP_EncryptUpdate(j->ctx, NULL, &n, aad, AAD_SIZE) == 1 &&
         (len == 0 || EVP_EncryptUpdate(j->ctx, out + NONCE_SIZE, &n, in, (int)len) == 1) &&
         EVP_EncryptFinal_ex(j->ctx, out + NONCE_SIZE + len, &n) == 1 &&
         EVP_CIPHER_CTX_ctrl(j->ctx, EVP_CTRL_GCM_GET_TAG, TAG_SIZE, out + NONCE_SIZE + len) ==
             1;
}

/* Opens one sealed block of `len` bytes (>= OVERHEAD); OpenSSL compares the tag in constant time. */
static bool open_block(job_t *j, uint64_t index, bool final, const uint8_t *in, size_t len,
                       uint8_t *out) {
  uint8_t aad[AAD_SIZE], tag[TAG_SIZE];
  size_t body = len - OVERHEAD;
  int n;
  block_aad(j, index, final, aad);
  memcpy(tag, in + len - TAG_SIZE, TAG_SIZE);
  return EVP_DecryptInit_ex(j->ctx, NULL, NULL, NULL, in) == 1 &&
         EVP_DecryptUpdate(j->ctx, NULL, &n, aad, AAD_SIZE) == 1 &&
         (body == 0 || EVP_DecryptUpdate(j->ctx, out, &n, in + NONCE_SIZE, (int)body) == 1) &&
         EVP_CIPHER_CTX_ctrl(j->ctx, EVP_CTRL_GCM_SET_TAG, TAG_SIZE, tag) == 1 &&
         EVP_DecryptFinal_ex(j->ctx, out + body, &n) == 1;
}

static bool all_zero(const uint8_t *p, size_t n) {
  uint8_t acc = 0;
  for (size_t i = 0; i < n; i++) acc |= p[i];
  return acc == 0;
}

/* Seals j->plain into `out` (plain_len + count * OVERHEAD bytes). */
static int64_t seal_all(job_t *j, uint8_t *out) {
  size_t bs = j->block_size;
  size_t full = j->plain_len / bs;
  size_t count = full + (j->ends_file ? 1 : 0);
  size_t pos = 0;
  for (size_t i = 0; i < count; i++) {
    size_t len = i < full ? bs : j->plain_len - full * bs;
    if (!seal_block(j, j->first_index + i, i == full, j->nonces + i * NONCE_SIZE,
                    j->plain + i * bs, len, out + pos))
      return -EIO;
    pos += len + OVERHEAD;
  }
  return 0;
}

static size_t sealed_size(const job_t *j) {
  size_t full = j->plain_len / j->block_size;
  return j->plain_len + (full + (j->ends_file ? 1 : 0)) * OVERHEAD;
}

static int64_t run_seal(job_t *j) {
  size_t total = sealed_size(j);
  uint8_t *out = scratch_for(total);
  if (!out) return -ENOMEM;
  int64_t res = seal_all(j, out);
  if (res < 0) return res;
  for (size_t done = 0; done < total;) {
    ssize_t n = pwrite(j->fd, out + done, total - done, (off_t)(j->position + (int64_t)done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    done += (size_t)n;
  }
  return 0;
}

/* Opens `got` sealed bytes into j->plain: the cleartext length, or -EBADMSG. */
static int64_t open_all(job_t *j, const uint8_t *in, size_t got) {
  size_t sbs = j->block_size + OVERHEAD, out_pos = 0;
  uint64_t index = j->first_index;
  for (size_t pos = 0; pos < got; pos += sbs, index++) {
    size_t len = got - pos < sbs ? got - pos : sbs;
    bool final = index == j->final_index;
    if (len < OVERHEAD || out_pos + len - OVERHEAD > j->plain_len) return -EBADMSG;
    if (j->holes && !final && len == sbs && all_zero(in + pos, len)) {
      memset(j->plain + out_pos, 0, j->block_size);
    } else if (!open_block(j, index, final, in + pos, len, j->plain + out_pos)) {
      return -EBADMSG;
    }
    out_pos += len - OVERHEAD;
  }
  return (int64_t)out_pos;
}

static int64_t run_open(job_t *j) {
  uint8_t *in = scratch_for(j->sealed_len);
  if (!in) return -ENOMEM;
  size_t got = 0;
  while (got < j->sealed_len) {
    ssize_t n = pread(j->fd, in + got, j->sealed_len - got, (off_t)(j->position + (int64_t)got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) return -EBADMSG; /* shorter than its size says: the JS path reports it */
    got += (size_t)n;
  }
  return open_all(j, in, got);
}

static void job_execute(napi_env env, void *data) {
  (void)env;
  job_t *j = data;
  j->result = j->seal ? run_seal(j) : run_open(j);
  /* No unverified cleartext is left behind for the JS side to see. */
  if (!j->seal && j->result < 0) OPENSSL_cleanse(j->plain, j->plain_len);
}

static void job_free(napi_env env, job_t *j) {
  for (int i = 0; i < 2; i++)
    if (j->refs[i]) napi_delete_reference(env, j->refs[i]);
  EVP_CIPHER_CTX_free(j->ctx); /* cleanses the key schedule */
  if (j->work) napi_delete_async_work(env, j->work);
  OPENSSL_cleanse(j, sizeof *j);
  free(j);
}

static void job_complete(napi_env env, napi_status status, void *data) {
  job_t *j = data;
  napi_value v;
  if (status == napi_cancelled) j->result = -ECANCELED;
  napi_create_double(env, (double)j->result, &v);
  napi_resolve_deferred(env, j->deferred, v);
  job_free(env, j);
}

/* ---- argument helpers ---------------------------------------------------------- */

static bool get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  bool is = false;
  void *p;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  napi_typedarray_type type;
  size_t length, offset;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &type, &length, &p, &ab, &offset) != napi_ok ||
      type != napi_uint8_array)
    return false;
  *data = p, *len = length;
  return true;
}

static bool get_int(napi_env env, napi_value v, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return false;
  if (!(d >= -9007199254740991.0 && d <= 9007199254740991.0)) return false;
  *out = (int64_t)d;
  return (double)*out == d;
}

static bool get_bool(napi_env env, napi_value v, bool *out) {
  return napi_get_value_bool(env, v, out) == napi_ok;
}

static napi_value throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

/* An EVP context for AES-256-GCM with `key` set, for sealing or opening. */
static EVP_CIPHER_CTX *gcm_context(const uint8_t *key, bool seal) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (!ctx) return NULL;
  if (EVP_CipherInit_ex(ctx, aes_gcm, NULL, key, NULL, seal ? 1 : 0) != 1) {
    EVP_CIPHER_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

static napi_value queue(napi_env env, job_t *j, napi_value *keep, int nkeep) {
  napi_value promise, resource;
  if (napi_create_promise(env, &j->deferred, &promise) != napi_ok) {
    job_free(env, j);
    return NULL;
  }
  bool ok = true;
  for (int i = 0; i < nkeep && ok; i++)
    ok = napi_create_reference(env, keep[i], 1, &j->refs[i]) == napi_ok;
  ok = ok &&
       napi_create_string_utf8(env, "cryptmount:blocks", NAPI_AUTO_LENGTH, &resource) == napi_ok &&
       napi_create_async_work(env, NULL, resource, job_execute, job_complete, j, &j->work) ==
           napi_ok &&
       napi_queue_async_work(env, j->work) == napi_ok;
  if (!ok) {
    napi_value v;
    napi_create_double(env, -EAGAIN, &v);
    napi_resolve_deferred(env, j->deferred, v);
    job_free(env, j);
  }
  return promise;
}

/*
 * sealWrite(fd, key, fileId, firstIndex, plain, endsFile, nonces, position, blockSize)
 *   -> Promise<0 | -errno>: seals `plain` as blocks firstIndex.. (the last
 *   one final when endsFile; else plain is whole blocks) and pwrites them all
 *   at `position`, retrying short writes. Resolves once every byte is in the
 *   lower's page cache.
 */
/* The arguments a seal shares in both forms: key, fileId, firstIndex, plain,
 * endsFile, nonces, blockSize (a[0..6]). NULL and a pending exception if bad. */
static job_t *seal_job(napi_env env, napi_value *a, const char *what) {
  int64_t first, bs;
  uint8_t *key, *file_id, *plain, *nonces;
  size_t key_len, id_len, plain_len, nonces_len;
  bool ends_file;
  if (!get_bytes(env, a[0], &key, &key_len) || !get_bytes(env, a[1], &file_id, &id_len) ||
      !get_int(env, a[2], &first) || !get_bytes(env, a[3], &plain, &plain_len) ||
      !get_bool(env, a[4], &ends_file) || !get_bytes(env, a[5], &nonces, &nonces_len) ||
      !get_int(env, a[6], &bs))
    return throw_type(env, what), NULL;
  if (key_len != KEY_SIZE || id_len != FILE_ID_SIZE || first < 0 || bs <= 0 || bs > (1 << 24))
    return throw_type(env, what), NULL;
  size_t full = plain_len / (size_t)bs;
  if (!ends_file && full * (size_t)bs != plain_len)
    return throw_type(env, "seal: only the final block may be partial"), NULL;
  size_t count = full + (ends_file ? 1 : 0);
  if (nonces_len != count * NONCE_SIZE) return throw_type(env, "seal: one nonce per block"), NULL;
  job_t *j = calloc(1, sizeof *j);
  if (!j) return throw_type(env, "seal: out of memory"), NULL;
  j->seal = true;
  j->fd = -1;
  memcpy(j->file_id, file_id, FILE_ID_SIZE);
  j->first_index = (uint64_t)first;
  j->ends_file = ends_file;
  j->block_size = (size_t)bs;
  j->plain = plain, j->plain_len = plain_len;
  j->nonces = nonces;
  j->ctx = gcm_context(key, true);
  if (!j->ctx) {
    free(j);
    return throw_type(env, "seal: OpenSSL could not set up AES-256-GCM"), NULL;
  }
  return j;
}

/* The arguments an open shares in both forms: key, fileId, firstIndex,
 * finalIndex, holes, out, blockSize (a[0..6]). */
static job_t *open_job(napi_env env, napi_value *a, const char *what) {
  int64_t first, final, bs;
  uint8_t *key, *file_id, *out;
  size_t key_len, id_len, out_len;
  bool holes;
  if (!get_bytes(env, a[0], &key, &key_len) || !get_bytes(env, a[1], &file_id, &id_len) ||
      !get_int(env, a[2], &first) || !get_int(env, a[3], &final) || !get_bool(env, a[4], &holes) ||
      !get_bytes(env, a[5], &out, &out_len) || !get_int(env, a[6], &bs))
    return throw_type(env, what), NULL;
  if (key_len != KEY_SIZE || id_len != FILE_ID_SIZE || first < 0 || final < 0 || bs <= 0 ||
      bs > (1 << 24))
    return throw_type(env, what), NULL;
  job_t *j = calloc(1, sizeof *j);
  if (!j) return throw_type(env, "open: out of memory"), NULL;
  j->fd = -1;
  memcpy(j->file_id, file_id, FILE_ID_SIZE);
  j->first_index = (uint64_t)first;
  j->final_index = (uint64_t)final;
  j->holes = holes;
  j->block_size = (size_t)bs;
  j->plain = out, j->plain_len = out_len;
  j->ctx = gcm_context(key, false);
  if (!j->ctx) {
    free(j);
    return throw_type(env, "open: OpenSSL could not set up AES-256-GCM"), NULL;
  }
  return j;
}

/* Frees a job that never reached the threadpool. */
static void job_discard(job_t *j) {
  EVP_CIPHER_CTX_free(j->ctx);
  OPENSSL_cleanse(j, sizeof *j);
  free(j);
}

/*
 * sealWrite(fd, key, fileId, firstIndex, plain, endsFile, nonces, blockSize, position)
 *   -> Promise<0 | -errno>: seals `plain` as blocks firstIndex.. (the last
 *   one final when endsFile; else plain is whole blocks) and pwrites them all
 *   at `position`, retrying short writes. Resolves once every byte is in the
 *   lower's page cache.
 */
static napi_value js_seal_write(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value a[9];
  int64_t fd, position;
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc < 9 ||
      !get_int(env, a[0], &fd) || fd < 0 || fd > INT32_MAX || !get_int(env, a[8], &position) ||
      position < 0)
    return throw_type(env, "sealWrite(fd, key, fileId, first, plain, endsFile, nonces, blockSize, position)");
  job_t *j = seal_job(env, a + 1, "sealWrite: bad arguments");
  if (!j) return NULL;
  j->fd = (int)fd;
  j->position = position;
  napi_value keep[2] = {a[4], a[6]};
  return queue(env, j, keep, 2);
}

/* sealBlocks(key, fileId, firstIndex, plain, endsFile, nonces, blockSize) -> Buffer, inline. */
static napi_value js_seal_blocks(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value a[7], result;
  void *out;
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc < 7)
    return throw_type(env, "sealBlocks: 7 arguments");
  job_t *j = seal_job(env, a, "sealBlocks: bad arguments");
  if (!j) return NULL;
  bool ok = napi_create_buffer(env, sealed_size(j), &out, &result) == napi_ok &&
            seal_all(j, out) == 0;
  job_discard(j);
  return ok ? result : throw_type(env, "sealBlocks: OpenSSL failed");
}

/*
 * openRead(fd, key, fileId, firstIndex, finalIndex, holes, out, blockSize, position, sealedLength)
 *   -> Promise<cleartext bytes | -errno>: preads sealedLength bytes at
 *   `position` and opens them into `out` as blocks firstIndex.. (finalIndex
 *   is the file's final block; with `holes`, an all-zero full block reads as
 *   zeros, §9). -EBADMSG: a block failed or the lower was short (out zeroed).
 */
static napi_value js_open_read(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value a[10];
  int64_t fd, position, sealed_len;
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc < 10 ||
      !get_int(env, a[0], &fd) || fd < 0 || fd > INT32_MAX || !get_int(env, a[8], &position) ||
      position < 0 || !get_int(env, a[9], &sealed_len) || sealed_len <= 0)
    return throw_type(env, "openRead(fd, key, fileId, first, final, holes, out, blockSize, position, sealedLength)");
  job_t *j = open_job(env, a + 1, "openRead: bad arguments");
  if (!j) return NULL;
  j->fd = (int)fd;
  j->position = position;
  j->sealed_len = (size_t)sealed_len;
  napi_value keep[1] = {a[6]};
  return queue(env, j, keep, 1);
}

/*
 * openBlocks(key, fileId, firstIndex, finalIndex, holes, out, blockSize, sealed)
 *   -> cleartext bytes in out, or -EBADMSG (out zeroed), inline.
 */
static napi_value js_open_blocks(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value a[8], result;
  uint8_t *sealed;
  size_t sealed_len;
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc < 8 ||
      !get_bytes(env, a[7], &sealed, &sealed_len))
    return throw_type(env, "openBlocks: 8 arguments");
  job_t *j = open_job(env, a, "openBlocks: bad arguments");
  if (!j) return NULL;
  int64_t res = open_all(j, sealed, sealed_len);
  if (res < 0) OPENSSL_cleanse(j->plain, j->plain_len);
  job_discard(j);
  napi_create_double(env, (double)res, &result);
  return result;
}

/* ---- names (§10): AES-256-SIV with the key expanded once ---------------------- */

typedef struct siv_key {
  EVP_CIPHER_CTX *seal, *open; /* key set; each call works on a copy */
} siv_key_t;

static void siv_key_free(siv_key_t *k) {
  EVP_CIPHER_CTX_free(k->seal);
  EVP_CIPHER_CTX_free(k->open);
  k->seal = k->open = NULL;
}

static void siv_key_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  siv_key_free(data);
  free(data);
}

/* sivKey(key: 64 bytes) -> an opaque object holding the expanded key. */
static napi_value js_siv_key(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value a[1], obj;
  uint8_t *key;
  size_t len;
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc < 1 ||
      !get_bytes(env, a[0], &key, &len) || len != SIV_KEY_SIZE)
    return throw_type(env, "sivKey: a 64-byte key");
  siv_key_t *k = calloc(1, sizeof *k);
  if (!k) return throw_type(env, "sivKey: out of memory");
  k->seal = EVP_CIPHER_CTX_new();
  k->open = EVP_CIPHER_CTX_new();
  if (!k->seal || !k->open || EVP_CipherInit_ex(k->seal, aes_siv, NULL, key, NULL, 1) != 1 ||
      EVP_CipherInit_ex(k->open, aes_siv, NULL, key, NULL, 0) != 1) {
    siv_key_free(k);
    free(k);
    return throw_type(env, "sivKey: OpenSSL could not set up AES-256-SIV");
  }
  if (napi_create_object(env, &obj) != napi_ok ||
      napi_wrap(env, obj, k, siv_key_finalize, NULL, NULL) != napi_ok) {
    siv_key_free(k);
    free(k);
    return NULL;
  }
  return obj;
}

static siv_key_t *unwrap_key(napi_env env, napi_value v) {
  void *k = NULL;
  if (napi_unwrap(env, v, &k) != napi_ok) return NULL;
  return ((siv_key_t *)k)->seal ? k : NULL;
}

/* sivDispose(key): frees (and cleanses) the expanded key now; later use throws. */
static napi_value js_siv_dispose(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value a[1];
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc < 1) return NULL;
  siv_key_t *k = unwrap_key(env, a[0]);
  if (k) siv_key_free(k);
  return NULL;
}

/* Feeds the associated data (an array of Uint8Array, each one RFC 5297 AD string). */
static bool feed_aad(napi_env env, EVP_CIPHER_CTX *ctx, napi_value list) {
  uint32_t n;
  if (napi_get_array_length(env, list, &n) != napi_ok || n > MAX_AAD) return false;
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    uint8_t *data;
    size_t len;
    int outl;
    if (napi_get_element(env, list, i, &item) != napi_ok || !get_bytes(env, item, &data, &len) || len == 0 ||
        len > INT32_MAX || EVP_CipherUpdate(ctx, NULL, &outl, data, (int)len) != 1)
      return false;
  }
  return true;
}

/* sivSeal(key, aad[], plaintext) -> Buffer: V (16) || C, as RFC 5297 and @noble/ciphers. */
static napi_value js_siv_seal(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value a[3], result = NULL;
  uint8_t *pt;
  size_t len;
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc < 3)
    return throw_type(env, "sivSeal(key, aad, plaintext)");
  siv_key_t *k = unwrap_key(env, a[0]);
  if (!k) return throw_type(env, "sivSeal: not a live SIV key");
  if (!get_bytes(env, a[2], &pt, &len) || len == 0 || len > INT32_MAX - TAG_SIZE)
    return throw_type(env, "sivSeal: plaintext must be a non-empty Uint8Array");
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  void *out;
  int outl;
  bool ok = ctx && EVP_CIPHER_CTX_copy(ctx, k->seal) == 1 && feed_aad(env, ctx, a[1]) &&
            napi_create_buffer(env, len + TAG_SIZE, &out, &result) == napi_ok &&
            EVP_CipherUpdate(ctx, (uint8_t *)out + TAG_SIZE, &outl, pt, (int)len) == 1 &&
            EVP_CipherFinal_ex(ctx, (uint8_t *)out + TAG_SIZE, &outl) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_SIZE, out) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) return throw_type(env, "sivSeal: OpenSSL failed");
  return result;
}

/* sivOpen(key, aad[], sealed) -> Buffer, or undefined when the synthetic IV does not verify. */
static napi_value js_siv_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value a[3], result = NULL, none;
  uint8_t *sealed;
  size_t len;
  napi_get_undefined(env, &none);
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc < 3)
    return throw_type(env, "sivOpen(key, aad, sealed)");
  siv_key_t *k = unwrap_key(env, a[0]);
  if (!k) return throw_type(env, "sivOpen: not a live SIV key");
  if (!get_bytes(env, a[2], &sealed, &len) || len <= TAG_SIZE || len > INT32_MAX)
    return throw_type(env, "sivOpen: sealed must be a Uint8Array longer than the tag");
  size_t body = len - TAG_SIZE;
  uint8_t tag[TAG_SIZE];
  memcpy(tag, sealed, TAG_SIZE);
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  void *out;
  int outl;
  bool setup = ctx && EVP_CIPHER_CTX_copy(ctx, k->open) == 1 &&
               EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_SIZE, tag) == 1 &&
               feed_aad(env, ctx, a[1]) &&
               napi_create_buffer(env, body, &out, &result) == napi_ok;
  /* OpenSSL checks V in constant time and cleanses the output when it fails. */
  bool ok = setup && EVP_CipherUpdate(ctx, out, &outl, sealed + TAG_SIZE, (int)body) == 1 &&
            EVP_CipherFinal_ex(ctx, (uint8_t *)out + body, &outl) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!setup) return throw_type(env, "sivOpen: OpenSSL failed");
  if (!ok) {
    OPENSSL_cleanse(out, body);
    return none;
  }
  return result;
}

/* ---- module ------------------------------------------------------------------ */

static napi_value init_module(napi_env env, napi_value exports) {
  if (!aes_gcm) aes_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
  if (!aes_siv) aes_siv = EVP_CIPHER_fetch(NULL, "AES-256-SIV", NULL);
  if (!aes_gcm || !aes_siv) {
    napi_throw_error(env, NULL, "cryptmount crypto: OpenSSL lacks AES-256-GCM or AES-256-SIV");
    return NULL;
  }
  const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"sealWrite", js_seal_write},   {"openRead", js_open_read},   {"sealBlocks", js_seal_blocks},
      {"openBlocks", js_open_blocks}, {"sivKey", js_siv_key},
      {"sivDispose", js_siv_dispose}, {"sivSeal", js_siv_seal},   {"sivOpen", js_siv_open},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f) != napi_ok ||
        napi_set_named_property(env, exports, fns[i].name, f) != napi_ok)
      return NULL;
  }
  napi_value version;
  napi_create_double(env, CRYPTO_VERSION, &version);
  napi_set_named_property(env, exports, "version", version);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
