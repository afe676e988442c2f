/*
 * pam_cryptmount: encrypted home directories at login (docs/home.md).
 *
 * Kept small on purpose: the module only carries the login password from
 * `auth` to the session and password stacks, and hands it to the helper
 * (`cryptmount home pam-helper ACTION USER`, TypeScript) over a pipe on the
 * helper's standard input, never in argv or the environment. The helper does
 * the work (unlock, mount as the user, count sessions, rewrap the login
 * slot) and writes one message per line on its standard output, which the
 * module logs (syslog, always) and shows to the user (pam_info/pam_error):
 *
 *   info: TEXT    shown with pam_info and logged
 *   error: TEXT   shown with pam_error and logged
 *   log: TEXT     logged only
 *
 * Built to build/pam_cryptmount.so by scripts/build-native.mjs
 * (cc -shared, `pkg-config pam`; Debian: libpam0g-dev).
 *
 * Options:
 *   debug              log what the module does
 *   nullok             accepted for clarity; users without an encrypted home
 *                      (no /etc/cryptmount/home/USER.json) always pass through
 *   mount=~ | mount=~/Private
 *                      override the mount point recorded by `home setup`
 *   node=PATH cli=PATH run the helper as `PATH(node) PATH(cli) home ...`
 *                      (default: /usr/local/bin/cryptmount home ...)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#define PAM_SM_AUTH
#define PAM_SM_SESSION
#define PAM_SM_PASSWORD
#include <security/pam_ext.h>
#include <security/pam_modules.h>

#define REGISTRY "/etc/cryptmount/home"
#define DEFAULT_HELPER "/usr/local/bin/cryptmount"
#define AUTHTOK_DATA "pam_cryptmount_authtok"
#define UNCOUNTED_DATA "pam_cryptmount_uncounted"

/* Helper exit codes (src/home/pam-helper.ts, HELPER_EXIT). */
#define HELPER_OK 0
#define HELPER_NO_HOME 20
#define HELPER_NOT_COUNTED 21

struct options {
  int debug;
  const char *mount;
  const char *node;
  const char *cli;
};

static void parse_options(pam_handle_t *pamh, int argc, const char **argv, struct options *o) {
  memset(o, 0, sizeof *o);
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "debug") == 0)
      o->debug = 1;
    else if (strcmp(a, "nullok") == 0)
      continue;
    else if (strncmp(a, "mount=", 6) == 0 &&
             (strcmp(a + 6, "~") == 0 || strcmp(a + 6, "~/Private") == 0))
      o->mount = a + 6;
    else if (strncmp(a, "node=", 5) == 0 && a[5] == '/')
      o->node = a + 5;
    else if (strncmp(a, "cli=", 4) == 0 && a[4] == '/')
      o->cli = a + 4;
    else
      pam_syslog(pamh, LOG_ERR, "unknown or invalid option ignored: %s", a);
  }
}

/* The user name, if it is one we may put in a path; NULL otherwise. */
static const char *target_user(pam_handle_t *pamh) {
  const char *user = NULL;
  if (pam_get_user(pamh, &user, NULL) != PAM_SUCCESS || user == NULL) return NULL;
  size_t n = strlen(user);
  if (n == 0 || n > 64 || user[0] == '.' || user[0] == '-' || strchr(user, '/') != NULL)
    return NULL;
  return user;
}

/* Whether `home setup` registered an encrypted home for the user (a root-owned record). */
static int has_home(const char *user) {
  char path[PATH_MAX];
  struct stat st;
  if (snprintf(path, sizeof path, "%s/%s.json", REGISTRY, user) >= (int)sizeof path) return 0;
  return lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == 0;
}

static void wipe_string(char *s) {
  if (s == NULL) return;
  explicit_bzero(s, strlen(s));
}

static void cleanup_authtok(pam_handle_t *pamh, void *data, int error_status) {
  (void)pamh;
  (void)error_status;
  wipe_string(data);
  free(data);
}

static void cleanup_flag(pam_handle_t *pamh, void *data, int error_status) {
  (void)pamh;
  (void)data;
  (void)error_status;
}

/* Relays one line of helper output: shown to the user and logged. */
static void relay(pam_handle_t *pamh, int silent, char *line) {
  size_t n = strlen(line);
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
  if (n == 0) return;
  if (strncmp(line, "error: ", 7) == 0) {
    pam_syslog(pamh, LOG_ERR, "%s", line + 7);
    if (!silent) pam_error(pamh, "cryptmount: %s", line + 7);
  } else if (strncmp(line, "info: ", 6) == 0) {
    pam_syslog(pamh, LOG_NOTICE, "%s", line + 6);
    if (!silent) pam_info(pamh, "cryptmount: %s", line + 6);
  } else if (strncmp(line, "log: ", 5) == 0) {
    pam_syslog(pamh, LOG_INFO, "%s", line + 5);
  } else {
    pam_syslog(pamh, LOG_NOTICE, "helper: %s", line);
  }
}

static void child_exec(const struct options *o, const char *action, const char *user, int in_fd,
                       int out_fd) {
  /* The helper runs as root (setuid programs such as passwd and su have only euid 0). */
  if (geteuid() == 0) {
    if (setresgid(0, 0, 0) != 0 || setresuid(0, 0, 0) != 0) _exit(127);
  }
  if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0) _exit(127);
  long max = sysconf(_SC_OPEN_MAX);
  if (max < 0 || max > 65536) max = 65536;
  for (int fd = 3; fd < max; fd++) close(fd);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
  signal(SIGCHLD, SIG_DFL);
  umask(022);
  if (chdir("/") != 0) _exit(127);
  char *envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                  "LANG=C.UTF-8", NULL};
  const char *argv[12];
  int n = 0;
  const char *program;
  if (o->node && o->cli) {
    program = o->node;
    argv[n++] = o->node;
    argv[n++] = o->cli;
  } else {
    program = DEFAULT_HELPER;
    argv[n++] = DEFAULT_HELPER;
  }
  argv[n++] = "home";
  argv[n++] = "pam-helper";
  argv[n++] = action;
  argv[n++] = user;
  if (o->mount) {
    argv[n++] = "--mount";
    argv[n++] = o->mount;
  }
  if (o->debug) argv[n++] = "--debug";
  argv[n] = NULL;
  execve(program, (char *const *)argv, envp);
  dprintf(1, "error: cannot run the helper %s (%s)\n", program, strerror(errno));
  _exit(127);
}

/*
 * Runs the helper with `secrets` (each followed by a NUL) on its standard
 * input; relays its output; returns its exit status, or -1.
 */
static int run_helper(pam_handle_t *pamh, const struct options *o, int silent, const char *action,
                      const char *user, const char *const *secrets, int count) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) {
    pam_syslog(pamh, LOG_ERR, "pipe: %m");
    return -1;
  }
  if (pipe2(out, O_CLOEXEC) != 0) {
    pam_syslog(pamh, LOG_ERR, "pipe: %m");
    close(in[0]);
    close(in[1]);
    return -1;
  }
  struct sigaction ignore = {0}, deflt = {0}, old_pipe, old_chld;
  ignore.sa_handler = SIG_IGN;
  deflt.sa_handler = SIG_DFL;
  sigaction(SIGPIPE, &ignore, &old_pipe); /* a helper that died early must not kill the app */
  /* An application ignoring SIGCHLD would have the helper reaped before we see its status. */
  sigaction(SIGCHLD, &deflt, &old_chld);
  pid_t pid = fork();
  if (pid < 0) {
    pam_syslog(pamh, LOG_ERR, "fork: %m");
    sigaction(SIGPIPE, &old_pipe, NULL);
    sigaction(SIGCHLD, &old_chld, NULL);
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    return -1;
  }
  if (pid == 0) child_exec(o, action, user, in[0], out[1]);
  close(in[0]);
  close(out[1]);
  for (int i = 0; i < count; i++) {
    const char *s = secrets[i];
    size_t left = strlen(s) + 1; /* with its NUL */
    while (left > 0) {
      ssize_t w = write(in[1], s, left);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      s += w;
      left -= (size_t)w;
    }
  }
  close(in[1]);
  FILE *output = fdopen(out[0], "r");
  if (output != NULL) {
    char line[2048];
    while (fgets(line, sizeof line, output) != NULL) relay(pamh, silent, line);
    fclose(output);
  } else {
    close(out[0]);
  }
  sigaction(SIGPIPE, &old_pipe, NULL);
  int status;
  pid_t r;
  do r = waitpid(pid, &status, 0);
  while (r < 0 && errno == EINTR);
  sigaction(SIGCHLD, &old_chld, NULL);
  if (r < 0) {
    pam_syslog(pamh, LOG_ERR, "waiting for the helper: %m");
    return -1;
  }
  if (WIFEXITED(status)) {
    if (o->debug)
      pam_syslog(pamh, LOG_DEBUG, "helper %s %s: exit %d", action, user, WEXITSTATUS(status));
    return WEXITSTATUS(status);
  }
  pam_syslog(pamh, LOG_ERR, "helper %s %s: killed by signal %d", action, user,
             WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  return -1;
}

/* auth: keep the password the earlier modules checked, for open_session. */
PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv) {
  (void)flags;
  struct options o;
  parse_options(pamh, argc, argv, &o);
  const char *user = target_user(pamh);
  if (user == NULL || !has_home(user)) return PAM_IGNORE;
  const void *item = NULL;
  /* pam_get_item, not pam_get_authtok: never prompt, only take what the stack verified. */
  if (pam_get_item(pamh, PAM_AUTHTOK, &item) != PAM_SUCCESS || item == NULL) {
    if (o.debug) pam_syslog(pamh, LOG_DEBUG, "no password for %s in the auth stack", user);
    return PAM_IGNORE;
  }
  char *copy = strdup(item);
  if (copy == NULL) return PAM_BUF_ERR;
  if (pam_set_data(pamh, AUTHTOK_DATA, copy, cleanup_authtok) != PAM_SUCCESS) {
    cleanup_authtok(pamh, copy, 0);
    return PAM_IGNORE;
  }
  if (o.debug) pam_syslog(pamh, LOG_DEBUG, "kept the login password of %s for the session", user);
  return PAM_IGNORE;
}

PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv) {
  (void)pamh;
  (void)flags;
  (void)argc;
  (void)argv;
  return PAM_IGNORE;
}

PAM_EXTERN int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc, const char **argv) {
  struct options o;
  parse_options(pamh, argc, argv, &o);
  const char *user = target_user(pamh);
  if (user == NULL || !has_home(user)) return PAM_IGNORE;
  const void *data = NULL;
  int status;
  if (pam_get_data(pamh, AUTHTOK_DATA, &data) == PAM_SUCCESS && data != NULL) {
    const char *secrets[] = {data};
    status = run_helper(pamh, &o, flags & PAM_SILENT, "open", user, secrets, 1);
    /* The session needs it no more: wipe it now (the cleanup runs on replace). */
    pam_set_data(pamh, AUTHTOK_DATA, NULL, NULL);
  } else {
    status = run_helper(pamh, &o, flags & PAM_SILENT, "open-without-password", user, NULL, 0);
  }
  if (status == HELPER_NOT_COUNTED)
    pam_set_data(pamh, UNCOUNTED_DATA, (void *)UNCOUNTED_DATA, cleanup_flag);
  if (status == HELPER_OK) return PAM_SUCCESS;
  if (status == HELPER_NO_HOME || status == HELPER_NOT_COUNTED) return PAM_IGNORE;
  return PAM_SESSION_ERR;
}

PAM_EXTERN int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc, const char **argv) {
  struct options o;
  parse_options(pamh, argc, argv, &o);
  const char *user = target_user(pamh);
  if (user == NULL || !has_home(user)) return PAM_IGNORE;
  const void *uncounted = NULL;
  if (pam_get_data(pamh, UNCOUNTED_DATA, &uncounted) == PAM_SUCCESS && uncounted != NULL)
    return PAM_IGNORE;
  int status = run_helper(pamh, &o, flags & PAM_SILENT, "close", user, NULL, 0);
  return status == HELPER_OK ? PAM_SUCCESS : status == HELPER_NO_HOME ? PAM_IGNORE : PAM_SESSION_ERR;
}

/* chauthtok: after pam_unix changed the password, rewrap the login slot old -> new. */
PAM_EXTERN int pam_sm_chauthtok(pam_handle_t *pamh, int flags, int argc, const char **argv) {
  struct options o;
  parse_options(pamh, argc, argv, &o);
  if (flags & PAM_PRELIM_CHECK) return PAM_IGNORE;
  if (!(flags & PAM_UPDATE_AUTHTOK)) return PAM_IGNORE;
  const char *user = target_user(pamh);
  if (user == NULL || !has_home(user)) return PAM_IGNORE;
  const void *old_item = NULL, *new_item = NULL;
  pam_get_item(pamh, PAM_OLDAUTHTOK, &old_item);
  pam_get_item(pamh, PAM_AUTHTOK, &new_item);
  int silent = flags & PAM_SILENT;
  if (new_item == NULL) {
    pam_syslog(pamh, LOG_ERR, "no new password for %s in the password stack", user);
    return PAM_IGNORE;
  }
  int status;
  if (old_item == NULL) {
    /* root's `passwd USER`: no old password, so the login slot cannot be opened. */
    const char *secrets[] = {new_item};
    status = run_helper(pamh, &o, 0, "passwd-without-old", user, secrets, 1);
  } else {
    const char *secrets[] = {old_item, new_item};
    status = run_helper(pamh, &o, silent, "passwd", user, secrets, 2);
  }
  if (status == HELPER_OK) return PAM_SUCCESS;
  if (status == HELPER_NO_HOME) return PAM_IGNORE;
  return PAM_AUTHTOK_ERR;
}
