// A real S3 server on loopback for the cloud-lower suites (s3rver, an npm
// devDependency, run as its own process), and rclone pointed at it through
// RCLONE_CONFIG_<REMOTE>_* environment variables only: no config file with
// keys in it, nothing on argv but the remote's name. The credentials are
// s3rver's fixed test pair; s3rver keeps the bucket as plain files under
// `dir`, so a test can also look at (or damage) what the "cloud" holds.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { ROOT, isMounted, run, sleep, waitFor, type RunOptions, type RunResult } from "./volume.js";

const S3RVER = join(ROOT, "node_modules", "s3rver", "bin", "s3rver.js");

export const BUCKET = "vol";
/** The rclone remote the suites use: `s3:vol/...`. */
export const REMOTE = "s3";

export const haveRclone = (await run("sh", ["-c", "command -v rclone"])).code === 0;

export interface S3Server {
  readonly endpoint: string;
  /** Environment that defines the rclone remote `s3:` for this server. */
  readonly rcloneEnv: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * Starts s3rver on 127.0.0.1 (a free port) with one empty bucket, storing
 * under `dir`; resolves once it listens.
 */
export async function startS3(dir: string): Promise<S3Server> {
  await mkdir(dir, { recursive: true });
  const proc: ChildProcess = spawn(
    process.execPath,
    [S3RVER, "-d", dir, "-a", "127.0.0.1", "-p", "0", "--silent", "--configure-bucket", BUCKET],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`s3rver did not start: ${output}`)), 15_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8");
      const m = /listening on [\d.]+:(\d+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited (${code}): ${output}`));
    });
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const prefix = `RCLONE_CONFIG_${REMOTE.toUpperCase()}_`;
  return {
    endpoint,
    rcloneEnv: {
      [`${prefix}TYPE`]: "s3",
      [`${prefix}PROVIDER`]: "Other",
      [`${prefix}ENDPOINT`]: endpoint,
      [`${prefix}ACCESS_KEY_ID`]: "S3RVER",
      [`${prefix}SECRET_ACCESS_KEY`]: "S3RVER",
      [`${prefix}FORCE_PATH_STYLE`]: "true",
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise<void>((r) => proc.once("exit", () => r()));
      proc.kill("SIGTERM");
      await Promise.race([exited, sleep(5_000)]);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    },
  };
}

/**
 * The environment rclone runs with: ours, less any AWS_* or RCLONE_* variable
 * of the machine (an AWS_CA_BUNDLE, for one, makes rclone's S3 backend refuse
 * to start against a plain-HTTP endpoint), plus the remote's definition and an
 * empty config file so that no user config is read.
 */
export function rcloneEnvironment(s3: S3Server): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {};
  for (const key of Object.keys(process.env))
    if (key.startsWith("AWS_") || key.startsWith("RCLONE_")) env[key] = undefined;
  // Fail fast when the server is gone, rather than retrying for minutes.
  return {
    ...env,
    RCLONE_CONFIG: "/dev/null",
    RCLONE_RETRIES: "1",
    RCLONE_LOW_LEVEL_RETRIES: "2",
    ...s3.rcloneEnv,
  };
}

/** Runs rclone against the server (arguments name only paths and the remote). */
export function rclone(
  s3: S3Server,
  args: readonly string[],
  options: RunOptions = {},
): Promise<RunResult> {
  return run("rclone", args, { ...options, env: { ...rcloneEnvironment(s3), ...options.env } });
}

export async function rcloneOk(
  s3: S3Server,
  args: readonly string[],
  options: RunOptions = {},
): Promise<string> {
  const r = await rclone(s3, args, options);
  if (r.code !== 0) throw new Error(`rclone ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

/** A port that was free a moment ago on 127.0.0.1. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address
          ? resolve(address.port)
          : reject(new Error("no port")),
      );
    });
  });
}

export interface RcloneMount {
  readonly mountpoint: string;
  /**
   * Resolves once rclone's write cache has uploaded everything (rc vfs/stats:
   * nothing queued or in progress). rclone does not wait for that when it is
   * unmounted: what it had not uploaded stays in its cache directory only.
   */
  uploaded(): Promise<void>;
  /** rclone's own log (stderr), for assertions on what it refused. */
  log(): string;
  /** fusermount -u (lazy when busy), then waits for rclone to exit (SIGKILL after 15 s). */
  stop(): Promise<void>;
}

/**
 * `rclone mount REMOTE:PATH MOUNTPOINT ARGS...` in the foreground as a child
 * process, its cache in `cacheDir` (never the user's); resolves once the
 * mount is live. The caller must stop() it, also on failure.
 */
export async function rcloneMount(
  s3: S3Server,
  remotePath: string,
  mountpoint: string,
  cacheDir: string,
  args: readonly string[] = [],
): Promise<RcloneMount> {
  await mkdir(mountpoint, { recursive: true });
  const rcAddr = `127.0.0.1:${await freePort()}`;
  const proc = spawn(
    "rclone",
    [
      "mount",
      remotePath,
      mountpoint,
      "--cache-dir",
      cacheDir,
      "--rc",
      "--rc-addr",
      rcAddr,
      ...args,
    ],
    { env: { ...process.env, ...rcloneEnvironment(s3) }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  proc.stdout.on("data", (c: Buffer) => (log += c.toString("utf8")));
  proc.stderr.on("data", (c: Buffer) => (log += c.toString("utf8")));
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  const stop = async () => {
    if (isMounted(mountpoint)) {
      const r = await run("fusermount", ["-u", mountpoint], { timeoutMs: 15_000 });
      if (r.code !== 0) await run("fusermount", ["-uz", mountpoint], { timeoutMs: 15_000 });
    }
    if (proc.exitCode === null && proc.signalCode === null) {
      await Promise.race([exited, sleep(15_000)]);
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGKILL");
        await exited;
      }
    }
  };
  try {
    await waitFor(`rclone mount at ${mountpoint}`, () => {
      if (proc.exitCode !== null) throw new Error(`rclone mount exited: ${log}`);
      return isMounted(mountpoint);
    });
  } catch (err) {
    await stop();
    throw err;
  }
  const uploaded = () =>
    waitFor(
      "rclone to upload its write cache",
      async () => {
        const r = await run("rclone", ["rc", "--url", `http://${rcAddr}/`, "vfs/stats"], {
          env: rcloneEnvironment(s3),
        });
        if (r.code !== 0) return false;
        const stats = JSON.parse(r.stdout) as {
          diskCache?: { uploadsInProgress?: number; uploadsQueued?: number };
        };
        const cache = stats.diskCache;
        return cache !== undefined && cache.uploadsInProgress === 0 && cache.uploadsQueued === 0;
      },
      30_000,
    ).then(() => undefined);
  return { mountpoint, log: () => log, stop, uploaded };
}
