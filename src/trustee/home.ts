import { createPublicKey, type KeyObject } from "node:crypto";
import { chmod, mkdir, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../atomic.js";
import { EXIT, UserError } from "../errors.js";
import {
  generateEd25519,
  publicJwk,
  readKeyFile,
  selfSignedCertificate,
  spkiPin,
  thumbprint,
  writeKeyFile,
  type OkpJwk,
} from "./identity.js";
import { SqliteTrusteeStore } from "./sqlite-store.js";
import type { TrusteeStore } from "./store.js";

/**
 * The trustee directory (docs/trustee.md §3): keys, certificate, config and
 * the SQLite store. Directory 0700, every file 0600.
 */

export interface TrusteeConfig {
  readonly v: 1;
  /** The URL devices use (goes into invitations). */
  readonly url: string;
  readonly listen: { readonly host: string; readonly port: number };
  readonly trusteeId: string;
  readonly tlsPin: string;
  readonly adminId: string;
  readonly adminJwk: OkpJwk;
  readonly store: "sqlite";
}

export const FILES = {
  config: "config.json",
  trusteeKey: "trustee.key",
  certificate: "trustee.crt",
  adminKey: "admin.key",
} as const;

export interface TrusteeHome {
  readonly dir: string;
  readonly config: TrusteeConfig;
  /** Signs responses and audit records; its certificate is the TLS server certificate. */
  readonly key: KeyObject;
  readonly publicKey: KeyObject;
  readonly certificate: string;
  readonly store: TrusteeStore;
}

export async function initTrusteeDir(
  dir: string,
  options: { url?: string; host?: string; port?: number },
): Promise<TrusteeConfig> {
  const existing = await readdir(dir).catch(() => undefined);
  if (existing && existing.length > 0)
    throw new UserError(
      `${dir}: not empty; a trustee directory is created in a new or empty directory`,
      EXIT.usage,
    );
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? 8443;
  const url = options.url ?? `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
  if (!/^https:\/\/[^/]+$/.test(url))
    throw new UserError(`--url must be https://HOST[:PORT] with no path: ${url}`, EXIT.usage);

  const key = generateEd25519();
  const admin = generateEd25519();
  await writeKeyFile(join(dir, FILES.trusteeKey), key);
  await writeKeyFile(join(dir, FILES.adminKey), admin);
  const jwk = publicJwk(key);
  const trusteeId = await thumbprint(jwk);
  const certificate = await selfSignedCertificate(
    key,
    `cryptmount trustee ${trusteeId.slice(0, 16)}`,
  );
  await writeFileAtomic(join(dir, FILES.certificate), certificate, 0o600);
  const adminJwk = publicJwk(admin);
  const config: TrusteeConfig = {
    v: 1,
    url,
    listen: { host, port },
    trusteeId,
    tlsPin: spkiPin(key),
    adminId: await thumbprint(adminJwk),
    adminJwk,
    store: "sqlite",
  };
  await writeFileAtomic(join(dir, FILES.config), JSON.stringify(config, null, 2) + "\n", 0o600);
  const store = new SqliteTrusteeStore(dir);
  await store.close();
  for (const f of ["state.db", "audit.db"]) await chmod(join(dir, f), 0o600).catch(() => undefined);
  return config;
}

export async function loadConfig(dir: string): Promise<TrusteeConfig> {
  let text: string;
  try {
    text = await readFile(join(dir, FILES.config), "utf8");
  } catch {
    throw new UserError(
      `${dir}: not a trustee directory (no ${FILES.config}; run cryptmount trustee init)`,
      EXIT.notAVolume,
    );
  }
  const config = JSON.parse(text) as TrusteeConfig;
  if (config.v !== 1)
    throw new UserError(`${dir}: unsupported trustee config version`, EXIT.notAVolume);
  return config;
}

/** Opens the directory: config, trustee key, certificate, store. */
export async function openTrusteeHome(dir: string): Promise<TrusteeHome> {
  const config = await loadConfig(dir);
  const info = await stat(dir);
  if ((info.mode & 0o077) !== 0)
    throw new UserError(`${dir}: must not be accessible to group or others (chmod 700)`, EXIT.io);
  const key = await readKeyFile(join(dir, FILES.trusteeKey));
  const certificate = await readFile(join(dir, FILES.certificate), "utf8");
  const store = new SqliteTrusteeStore(dir);
  return { dir, config, key, publicKey: createPublicKey(key), certificate, store };
}

export async function readAdminKey(dir: string, path?: string): Promise<KeyObject> {
  return readKeyFile(path ?? join(dir, FILES.adminKey));
}
