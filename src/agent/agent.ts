import { chmod, lstat, mkdir, unlink } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { EXIT, UserError } from "../errors.js";
import type { Logger } from "../log.js";
import { VOLUME_ID } from "../trustee/protocol.js";
import type { DeviceKeys } from "./device.js";
import { peerCheckAvailable, peerCredentials } from "./peer.js";
import { release, renewLease, TrusteeRefusal } from "./trustee-client.js";

/**
 * `cryptmount agent` (docs/trustee.md §11): holds mount keys released by the
 * trustee in memory only, for the user who runs it, on a Unix socket in a
 * 0700 directory. Entries expire after `idleTtl` without use and after
 * `maxTtl` in any case; `lock` drops everything and refuses until `unlock`;
 * `forget` drops one volume or all. Nothing it holds is written to disk.
 */

export interface AgentOptions {
  readonly socketPath: string;
  readonly device: DeviceKeys;
  readonly logger: Logger;
  /** Seconds; default 600 (reset on each use). */
  readonly idleTtl?: number;
  /** Seconds; default 7200 (never extended). */
  readonly maxTtl?: number;
}

export type AgentRequest =
  | { op: "get"; volume: string; trustee?: string; key_version?: number }
  | { op: "lock" }
  | { op: "unlock" }
  | { op: "forget"; volume?: string }
  | { op: "renew"; volume: string; trustee?: string }
  | { op: "status" };

export type AgentResponse =
  | {
      ok: true;
      key?: string;
      key_version?: number;
      cached?: boolean;
      /** The mount must renew before this instant (§8.6); absent: no lease. */
      lease_expires_at?: string;
      status?: AgentStatus;
    }
  | { ok: false; error: string; rule?: string; exit: number };

export interface AgentStatus {
  readonly locked: boolean;
  /** Whether peers are checked with SO_PEERCRED (else: socket permissions only). */
  readonly peerCheck: boolean;
  readonly device: string;
  readonly trustee: string | null;
  readonly entries: { volume: string; key_version: number; age_s: number; idle_s: number }[];
}

interface Entry {
  readonly key: Buffer;
  readonly keyVersion: number;
  readonly fetchedAt: number;
  /** Dropped at this instant whatever the use: maxTtl, or the policy's agent TTL or lease if shorter. */
  readonly expiresAt: number;
  /** The lease of the release (§8.6): a mount handed this key must renew before it. */
  readonly leaseExpiresAt: string | undefined;
  lastUsed: number;
}

export function defaultSocketPath(): string {
  const runtime = process.env.XDG_RUNTIME_DIR || `/tmp/cryptmount-${process.getuid?.() ?? 0}`;
  return join(runtime, "cryptmount", "agent.sock");
}

/** The socket's directory: created 0700, and refused if someone else could reach into it. */
async function secureSocketDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await lstat(dir);
  const uid = process.getuid?.();
  if (!info.isDirectory() || (uid !== undefined && info.uid !== uid))
    throw new UserError(`${dir}: not a directory owned by this user`, EXIT.io);
  if ((info.mode & 0o077) !== 0) await chmod(dir, 0o700);
}

export interface RunningAgent {
  readonly socketPath: string;
  close(): Promise<void>;
}

export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  const log = options.logger;
  const idleMs = (options.idleTtl ?? 600) * 1000;
  const maxMs = (options.maxTtl ?? 7200) * 1000;
  const cache = new Map<string, Entry>();
  const inflight = new Map<string, Promise<Entry>>();
  let locked = false;
  const device = options.device;
  const trusteeId = device.profile.trustee?.tid ?? null;

  const cacheKey = (volume: string, version?: number) => `${volume}#${version ?? "latest"}`;

  function drop(key: string, why: string): void {
    const e = cache.get(key);
    if (!e) return;
    e.key.fill(0);
    cache.delete(key);
    log.info({ volume: key.split("#")[0], why }, "mount key dropped");
  }

  function dropAll(why: string): void {
    for (const k of [...cache.keys()]) drop(k, why);
  }

  function sweep(): void {
    const now = Date.now();
    for (const [k, e] of cache) {
      if (now >= e.expiresAt) drop(k, "max_ttl");
      else if (now - e.lastUsed >= idleMs) drop(k, "idle_ttl");
    }
  }
  const sweeper = setInterval(sweep, Math.min(1000, Math.max(50, Math.floor(idleMs / 4))));
  sweeper.unref();

  /**
   * The key for `volume`, from the cache or a release. A key whose policy
   * sets agent TTL 0 is handed out once and not kept (`keep` false): the
   * caller wipes it after answering.
   */
  async function get(
    volume: string,
    version?: number,
  ): Promise<{ entry: Entry; cached: boolean; keep: boolean }> {
    sweep();
    const k = cacheKey(volume, version);
    const hit = cache.get(k);
    if (hit) {
      hit.lastUsed = Date.now();
      return { entry: hit, cached: true, keep: true };
    }
    // Concurrent asks for one volume share one release; an uncached key
    // (agent TTL 0) is never shared, so each asker gets (and wipes) its own.
    const shared = inflight.get(k);
    if (shared) {
      const entry = await shared;
      if (cache.get(k) === entry) return { entry, cached: false, keep: true };
    }
    const pending = (async () => {
      const r = await release(device, volume, version ? { keyVersion: version } : {});
      const now = Date.now();
      // A key is kept no longer than the agent's hard TTL, the policy's agent
      // TTL, or its lease: past the lease, a mount given it would stop at once.
      const leaseMs = r.leaseExpiresAt ? Date.parse(r.leaseExpiresAt) - now : Infinity;
      const ttlMs = Math.max(
        0,
        Math.min(maxMs, r.agentTtl === undefined ? Infinity : r.agentTtl * 1000, leaseMs),
      );
      const entry: Entry = {
        key: r.mountKey,
        keyVersion: r.keyVersion,
        fetchedAt: now,
        expiresAt: now + ttlMs,
        leaseExpiresAt: r.leaseExpiresAt,
        lastUsed: now,
      };
      if (locked) {
        r.mountKey.fill(0);
        throw new UserError("the agent was locked while the key was fetched", EXIT.failure);
      }
      if (ttlMs > 0) cache.set(k, entry);
      log.info(
        { volume, key_version: r.keyVersion, request: r.requestId, kept_s: ttlMs / 1000 },
        "mount key released",
      );
      return entry;
    })().finally(() => {
      if (inflight.get(k) === pending) inflight.delete(k);
    });
    inflight.set(k, pending);
    const entry = await pending;
    return { entry, cached: false, keep: cache.get(k) === entry };
  }

  /** The checks `get` and `renew` share: a volume ID, and this agent's trustee. */
  function checkVolumeRequest(req: {
    volume: unknown;
    trustee?: unknown;
  }): AgentResponse | undefined {
    if (typeof req.volume !== "string" || !VOLUME_ID.test(req.volume))
      return { ok: false, error: "not a volume ID", exit: EXIT.usage };
    if (req.trustee !== undefined && req.trustee !== trusteeId)
      return {
        ok: false,
        error: `this agent's device is enrolled with trustee ${trusteeId ?? "(none)"}, not ${String(req.trustee)}`,
        exit: EXIT.usage,
      };
    return undefined;
  }

  async function handle(req: AgentRequest): Promise<AgentResponse> {
    switch (req.op) {
      case "get": {
        if (locked)
          return {
            ok: false,
            error: "the agent is locked (cryptmount agent unlock)",
            exit: EXIT.failure,
          };
        const refused = checkVolumeRequest(req);
        if (refused) return refused;
        const version = req.key_version;
        if (version !== undefined && (!Number.isSafeInteger(version) || version < 1))
          return { ok: false, error: "key_version must be a positive integer", exit: EXIT.usage };
        const { entry, cached, keep } = await get(req.volume, version);
        const key = entry.key.toString("base64url");
        if (!keep) entry.key.fill(0);
        return {
          ok: true,
          key,
          key_version: entry.keyVersion,
          cached,
          ...(entry.leaseExpiresAt ? { lease_expires_at: entry.leaseExpiresAt } : {}),
        };
      }
      case "renew": {
        // A mount's lease (§8.6): no key moves. A refusal drops what is cached,
        // so the next mount asks the trustee too.
        const refused = checkVolumeRequest(req);
        if (refused) return refused;
        try {
          const at = await renewLease(device, req.volume);
          log.info({ volume: req.volume, lease_expires_at: at }, "lease renewed");
          return { ok: true, lease_expires_at: at };
        } catch (err) {
          if (err instanceof TrusteeRefusal)
            for (const k of [...cache.keys()])
              if (k.startsWith(`${req.volume}#`)) drop(k, `renewal refused: ${err.rule}`);
          throw err;
        }
      }
      case "lock":
        locked = true;
        dropAll("lock");
        return { ok: true };
      case "unlock":
        locked = false;
        return { ok: true };
      case "forget":
        if (req.volume === undefined) dropAll("forget");
        else
          for (const k of [...cache.keys()]) if (k.startsWith(`${req.volume}#`)) drop(k, "forget");
        return { ok: true };
      case "status": {
        sweep();
        const now = Date.now();
        return {
          ok: true,
          status: {
            locked,
            peerCheck,
            device: device.profile.deviceId,
            trustee: trusteeId,
            entries: [...cache.entries()].map(([k, e]) => ({
              volume: k.split("#")[0]!,
              key_version: e.keyVersion,
              age_s: Math.floor((now - e.fetchedAt) / 1000),
              idle_s: Math.floor((now - e.lastUsed) / 1000),
            })),
          },
        };
      }
      default:
        return { ok: false, error: "unknown request", exit: EXIT.usage };
    }
  }

  const peerCheck = peerCheckAvailable();
  const ownUid = process.getuid?.();
  if (!peerCheck) log.warn("SO_PEERCRED unavailable: access rests on the socket's permissions");

  function serve(socket: Socket): void {
    if (peerCheck) {
      const peer = peerCredentials(socket);
      // The owner and root only; a peer whose credentials cannot be read is refused too.
      if (!peer || (peer.uid !== ownUid && peer.uid !== 0)) {
        log.warn(
          { uid: peer?.uid ?? null, pid: peer?.pid ?? null },
          "agent connection refused: another user",
        );
        socket.destroy();
        return;
      }
    }
    let buffer = "";
    socket.setEncoding("utf8");
    socket.setTimeout(60_000, () => socket.destroy());
    socket.on("error", () => socket.destroy());
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      if (buffer.length > 4096) {
        socket.destroy();
        return;
      }
      const nl = buffer.indexOf("\n");
      if (nl < 0) return;
      const line = buffer.slice(0, nl);
      buffer = "";
      let req: AgentRequest;
      try {
        req = JSON.parse(line) as AgentRequest;
      } catch {
        socket.end(JSON.stringify({ ok: false, error: "not JSON", exit: EXIT.usage }) + "\n");
        return;
      }
      handle(req)
        .catch((err: unknown): AgentResponse => {
          const e = err as Error;
          if (err instanceof TrusteeRefusal)
            return { ok: false, error: e.message, rule: err.rule, exit: err.exitCode };
          if (err instanceof UserError) return { ok: false, error: e.message, exit: err.exitCode };
          log.error({ err: e.message }, "agent request failed");
          return { ok: false, error: "internal error", exit: EXIT.failure };
        })
        .then((res) => socket.end(JSON.stringify(res) + "\n"));
    });
  }

  await secureSocketDir(dirname(options.socketPath));
  await unlink(options.socketPath).catch(() => undefined);
  const server: Server = createServer(serve);
  const oldMask = process.umask(0o177); // the socket is created 0600
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.socketPath, () => resolve());
    });
  } finally {
    process.umask(oldMask);
  }
  await chmod(options.socketPath, 0o600);
  log.info({ socket: options.socketPath, device: device.profile.deviceId }, "agent listening");
  return {
    socketPath: options.socketPath,
    close: async () => {
      clearInterval(sweeper);
      dropAll("stop");
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await unlink(options.socketPath).catch(() => undefined);
    },
  };
}
