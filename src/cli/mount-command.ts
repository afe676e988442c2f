import { spawn } from "node:child_process";
import { openSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { serve, preflight, type MountSettings } from "../mount/serve.js";
import { ensureRuntimeDir } from "../mount/runtime.js";
import { hardenProcess, lockSecrets } from "../mount/hardening.js";
import { OpenVolume, loadConfig } from "../volume/volume.js";
import { EXIT, UserError } from "../errors.js";
import { requireFitLower } from "../volume/lower-probe.js";
import { CONFIG_VERSION } from "../format/config.js";
import { loggerFor, parseMountOptions, type CommonOptions } from "./options.js";
import { unlockForCommand, type MountLease, type TrusteeUnlockOptions } from "./trustee-volume.js";
import { AgentError, renewLeaseThroughAgent } from "../agent/client.js";
import { LeaseKeeper } from "../mount/lease.js";
import { lockForMount } from "../mount/volume-lock.js";
import type { Logger } from "pino";
import type { StopWatch } from "../mount/serve.js";

export interface MountCommandOptions extends CommonOptions, TrusteeUnlockOptions {
  foreground?: boolean;
  options?: string[];
  readOnly?: boolean;
  allowOther?: boolean;
  nonempty?: boolean;
  asyncMetadata?: boolean;
  /** -o dev / -o suid: device files and setuid bits take effect (root only, like mount(8)). */
  dev?: boolean;
  suid?: boolean;
}

/**
 * What the foreground parent hands the background server over its IPC channel
 * (never argv or env). The channel uses Node's "advanced" serialization, so
 * the mount keys travel as bytes, not as strings: the sender wipes its
 * Buffers once the message is written, the receiver copies the keys into
 * Buffers of its own and wipes what it received. Residual: the serialized
 * message (sender) and the channel's read buffer (receiver) are Node
 * internals that are not wiped, and V8 may copy bytes it handles; both
 * processes are not dumpable and write no core file.
 */
interface ServeMessage {
  lower: string;
  mountpoint: string;
  settings: MountSettings;
  logFile?: string;
  logLevel: { verbose: boolean; debug: boolean };
  mountKeys: [number, Uint8Array][];
  /** The key came with a lease: the server renews it through the agent, and stops without it. */
  lease?: MountLease;
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
  const trusteeSocket = opts.trusteeSocket ?? str("trustee_socket");
  return {
    ...opts,
    ...(passfile ? { passfile } : {}),
    ...(keyfile ? { keyfile } : {}),
    ...(extpass ? { extpass } : {}),
    ...(logFile ? { logFile } : {}),
    ...(trusteeSocket ? { trusteeSocket } : {}),
    trustee: Boolean(opts.trustee || o.has("trustee") || trusteeSocket),
    readOnly: Boolean(opts.readOnly || o.has("ro")),
    allowOther: Boolean(opts.allowOther || o.has("allow_other")),
    nonempty: Boolean(opts.nonempty || o.has("nonempty")),
    asyncMetadata: Boolean(opts.asyncMetadata || o.has("async_metadata")),
    debug: Boolean(opts.debug || o.has("debug")),
    dev: Boolean(opts.dev || o.has("dev")),
    suid: Boolean(opts.suid || o.has("suid")),
  };
}

export async function mountCommand(
  lowerArg: string,
  mountpointArg: string,
  raw: MountCommandOptions,
): Promise<number> {
  const opts = foldMountOptions(raw);
  // This process reads the secret and unlocks: no core dumps from here on.
  hardenProcess();
  const { lower, mountpoint } = await preflight(lowerArg, mountpointArg, Boolean(opts.nonempty));
  await requireFitLower("mount", lower, raw); // src/volume/lower-probe.ts; before anything is written
  await ensureRuntimeDir(); // refused here, before a mount exists, rather than by the server once mounted
  lockForMount(lower).release(); // a rekey or repair running: said before a passphrase is asked for
  const log = loggerFor(opts);
  let lease: MountLease | undefined;
  const unlocked = await unlockForCommand(
    lower,
    opts,
    (message) => process.stderr.write(`cryptmount: ${message}\n`),
    (l) => (lease = l),
  );
  try {
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
      devices: Boolean(opts.dev),
      setuid: Boolean(opts.suid),
    };
    if (opts.foreground) {
      // serve() owns the copy and closes it when the mount ends; the slot key goes now.
      const volume = unlocked.openCopy();
      unlocked.close();
      try {
        volume.keyringOnly();
        lockSecrets(volume.secretBuffers());
        return await serve(
          volume,
          mountpoint,
          settings,
          log,
          () => undefined,
          leaseWatch(lease, log),
        );
      } finally {
        volume.close(); // serve() closes it when the mount ends; this covers its early failures
      }
    }
    const owner = unlocked;
    return await daemonize(
      {
        lower,
        mountpoint,
        settings,
        ...(opts.logFile ? { logFile: opts.logFile } : {}),
        logLevel: { verbose: Boolean(opts.verbose), debug: Boolean(opts.debug) },
        mountKeys: [...owner.mountKeys],
        ...(lease ? { lease } : {}),
      },
      () => owner.close(), // the keys are on their way: this process needs them no more
    );
  } finally {
    unlocked.close();
  }
}

/**
 * V8 flags of the background server. A young generation of 1 MiB semi-spaces
 * (Node 20's default grows to 16 MiB each) keeps the garbage of small requests
 * from piling up between scavenges: measured with 20,000 files created and
 * listed, RSS grew 2.6 KiB per file with the default and 1.1 KiB with this, at
 * the same CPU (docs/performance.md). Large buffers live outside the V8 heap,
 * so large reads and writes do not feel it.
 */
const SERVER_V8_FLAGS = ["--max-semi-space-size=1"];

/** Starts the server in the background and returns once the mount is live; `sent` runs once the message is written. */
function daemonize(message: ServeMessage, sent: () => void): Promise<number> {
  const script = fileURLToPath(new URL("./main.js", import.meta.url));
  // A detached server keeps whatever it inherits open: never the user's terminal,
  // never a pipe a caller waits on (`out=$(cryptmount mount ...)` would hang).
  // Only the systemd journal is kept; otherwise logs go to --log-file.
  const stderr = process.env.JOURNAL_STREAM && !process.stderr.isTTY ? "inherit" : "ignore";
  const child = spawn(process.execPath, [...SERVER_V8_FLAGS, script, "__serve"], {
    detached: true,
    stdio: [openSync("/dev/null", "r"), "ignore", stderr, "ipc"],
    serialization: "advanced",
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
    child.send(message, (err) => {
      sent();
      if (err) reject(new UserError(`cannot reach the mount server: ${err.message}`, EXIT.failure));
    });
    message.mountKeys.length = 0;
  });
}

/** The background server: hardens itself, receives keys over IPC, mounts, reports readiness, serves. */
export async function serveCommand(): Promise<number> {
  const reply = (m: object) => process.send?.(m);
  let hardening;
  try {
    // Before any key arrives: not dumpable, no core file, all the open files allowed.
    hardening = hardenProcess();
  } catch (err) {
    reply({ error: (err as Error).message, exitCode: EXIT.failure });
    process.disconnect?.();
    return EXIT.failure;
  }
  const message = await new Promise<ServeMessage>((resolve) => process.once("message", resolve));
  let volume: OpenVolume | undefined;
  try {
    const received = message.mountKeys;
    const mountKeys = new Map<number, Buffer>();
    for (const [epoch, key] of received) {
      const own = Buffer.alloc(key.length);
      own.set(key);
      key.fill(0);
      mountKeys.set(epoch, own);
    }
    received.length = 0;
    const log = loggerFor(
      { ...message.logLevel, ...(message.logFile ? { logFile: message.logFile } : {}) },
      true,
    );
    const { config } = await loadConfig(message.lower);
    volume = new OpenVolume(message.lower, config, mountKeys);
    volume.keyringOnly(); // derived now (a damaged config fails here) and the mount keys wiped
    const locked = lockSecrets(volume.secretBuffers());
    log.info(
      {
        dumpable: hardening.dumpable,
        coreLimit: hardening.coreLimit,
        lockedKeyBuffers: `${locked.locked}/${locked.total}`,
        openFileLimit: hardening.openFiles,
      },
      "server hardened",
    );
    // serve() closes the volume when the mount ends; the finally covers its early failures.
    return await serve(
      volume,
      message.mountpoint,
      message.settings,
      log,
      () => {
        reply({ ready: true });
        process.disconnect?.();
      },
      leaseWatch(message.lease, log),
    );
  } catch (err) {
    for (const [, key] of message.mountKeys) key.fill(0);
    const user =
      err instanceof UserError ? err : new UserError((err as Error).message, EXIT.failure);
    reply({ error: user.message, exitCode: user.exitCode });
    process.disconnect?.();
    return user.exitCode;
  } finally {
    volume?.close();
  }
}

/**
 * The lease watch of a trustee mount (docs/trustee.md §8.6): renewals through
 * the agent; a refusal (exit 9) stops the mount at once, an unreachable agent
 * or trustee only when the lease runs out.
 */
function leaseWatch(lease: MountLease | undefined, log: Logger): StopWatch | undefined {
  if (!lease) return undefined;
  return (stop) => {
    const keeper = new LeaseKeeper({
      initial: lease,
      log,
      stop,
      renew: async () => {
        try {
          const expiresAt = await renewLeaseThroughAgent({
            volumeId: lease.volume,
            trusteeId: lease.trustee,
            ...(lease.socket ? { socketPath: lease.socket } : {}),
          });
          return { ok: true, expiresAt };
        } catch (err) {
          const refused = err instanceof AgentError && err.exitCode === EXIT.trusteeRefused;
          return { ok: false, refused, reason: (err as Error).message };
        }
      },
    });
    keeper.start();
    log.info({ lease_expires_at: lease.expiresAt }, "mounted under a lease");
    return () => keeper.dispose();
  };
}
