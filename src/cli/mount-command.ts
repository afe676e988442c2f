import { spawn } from "node:child_process";
import { openSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { toBase64Url } from "../crypto/bytes.js";
import { readSecret } from "../keys/secret-input.js";
import { serve, preflight, type MountSettings } from "../mount/serve.js";
import { CONFIG_VERSION } from "../format/config.js";
import { keyringFor, loadConfig, unlockVolume } from "../volume/volume.js";
import { EXIT, UserError } from "../volume/errors.js";
import { loggerFor, parseMountOptions, type CommonOptions } from "./options.js";

export interface MountCommandOptions extends CommonOptions {
  foreground?: boolean;
  options?: string[];
  readOnly?: boolean;
  allowOther?: boolean;
  nonempty?: boolean;
  asyncMetadata?: boolean;
}

/** What the foreground parent hands the background server over its IPC channel (never argv or env). */
interface ServeMessage {
  lower: string;
  mountpoint: string;
  settings: MountSettings;
  logFile?: string;
  logLevel: { verbose: boolean; debug: boolean };
  mountKeys: [number, string][];
}

/** -o options from mount(8)/fstab folded into the command's own options. */
function foldMountOptions(opts: MountCommandOptions): MountCommandOptions {
  const o = parseMountOptions(opts.options ?? []);
  const str = (key: string) => {
    const v = o.get(key);
    return typeof v === "string" ? v : undefined;
  };
  const passfile = opts.passfile ?? str("passfile");
  const keyfile = opts.keyfile ?? str("keyfile");
  const extpass = opts.extpass ?? str("extpass");
  const logFile = opts.logFile ?? str("log_file");
  return {
    ...opts,
    ...(passfile ? { passfile } : {}),
    ...(keyfile ? { keyfile } : {}),
    ...(extpass ? { extpass } : {}),
    ...(logFile ? { logFile } : {}),
    readOnly: Boolean(opts.readOnly || o.has("ro")),
    allowOther: Boolean(opts.allowOther || o.has("allow_other")),
    nonempty: Boolean(opts.nonempty || o.has("nonempty")),
    asyncMetadata: Boolean(opts.asyncMetadata || o.has("async_metadata")),
    debug: Boolean(opts.debug || o.has("debug")),
  };
}

export async function mountCommand(
  lowerArg: string,
  mountpointArg: string,
  raw: MountCommandOptions,
): Promise<number> {
  const opts = foldMountOptions(raw);
  const { lower, mountpoint } = await preflight(lowerArg, mountpointArg, Boolean(opts.nonempty));
  const secret = await readSecret(opts);
  const unlocked = await unlockVolume(lower, secret);
  secret.bytes.fill(0);
  const log = loggerFor(opts);
  if (unlocked.usedBackup)
    log.warn({ lower }, "primary volume config unreadable; using the backup copy");
  const readOnly = Boolean(opts.readOnly) || unlocked.config.version < CONFIG_VERSION;
  if (unlocked.config.version < CONFIG_VERSION && !opts.readOnly) {
    process.stderr.write(
      `cryptmount: ${lower}: volume format version ${unlocked.config.version}: mounting read-only; ` +
        `run \`cryptmount upgrade ${lower}\` (once every machine using it runs this version) to write to it\n`,
    );
  }
  const settings: MountSettings = {
    readOnly,
    allowOther: Boolean(opts.allowOther),
    debug: Boolean(opts.debug),
    keySource: unlocked.slot.kind,
    nonEmpty: Boolean(opts.nonempty),
    asyncMetadata: Boolean(opts.asyncMetadata),
  };
  if (opts.foreground) {
    return serve(
      lower,
      mountpoint,
      unlocked.config,
      unlocked.keyring,
      settings,
      log,
      () => undefined,
    );
  }
  unlocked.keyring.wipe();
  return daemonize({
    lower,
    mountpoint,
    settings,
    ...(opts.logFile ? { logFile: opts.logFile } : {}),
    logLevel: { verbose: Boolean(opts.verbose), debug: Boolean(opts.debug) },
    mountKeys: [...unlocked.mountKeys].map(([epoch, key]) => [epoch, toBase64Url(key)]),
  });
}

/** Starts the server in the background and returns once the mount is live. */
function daemonize(message: ServeMessage): Promise<number> {
  const script = fileURLToPath(new URL("./main.js", import.meta.url));
  // A detached server keeps whatever it inherits open: never the user's terminal,
  // never a pipe a caller waits on (`out=$(cryptmount mount ...)` would hang).
  // Only the systemd journal is kept; otherwise logs go to --log-file.
  const stderr = process.env.JOURNAL_STREAM && !process.stderr.isTTY ? "inherit" : "ignore";
  const child = spawn(process.execPath, [script, "__serve"], {
    detached: true,
    stdio: [openSync("/dev/null", "r"), "ignore", stderr, "ipc"],
  });
  return new Promise((resolve, reject) => {
    child.once("message", (reply: { ready?: boolean; error?: string; exitCode?: number }) => {
      child.disconnect();
      child.unref();
      if (reply.ready) resolve(EXIT.ok);
      else
        reject(
          new UserError(reply.error ?? "mount failed", (reply.exitCode as never) ?? EXIT.failure),
        );
    });
    child.once("exit", (code) =>
      reject(new UserError(`mount server exited early (status ${code})`, EXIT.failure)),
    );
    child.send(message);
    message.mountKeys.length = 0;
  });
}

/** The background server: receives keys over IPC, mounts, reports readiness, serves. */
export async function serveCommand(): Promise<number> {
  const message = await new Promise<ServeMessage>((resolve) => process.once("message", resolve));
  const reply = (m: object) => process.send?.(m);
  try {
    const log = loggerFor(
      { ...message.logLevel, ...(message.logFile ? { logFile: message.logFile } : {}) },
      true,
    );
    const { config } = await loadConfig(message.lower);
    const mountKeys = new Map(
      message.mountKeys.map(([epoch, key]) => [epoch, Buffer.from(key, "base64url")]),
    );
    const keyring = keyringFor(config, mountKeys);
    for (const key of mountKeys.values()) key.fill(0);
    return await serve(
      message.lower,
      message.mountpoint,
      config,
      keyring,
      message.settings,
      log,
      () => {
        reply({ ready: true });
        process.disconnect?.();
      },
    );
  } catch (err) {
    const user =
      err instanceof UserError ? err : new UserError((err as Error).message, EXIT.failure);
    reply({ error: user.message, exitCode: user.exitCode });
    process.disconnect?.();
    return user.exitCode;
  }
}
