import { createPublicKey, type KeyObject } from "node:crypto";
import { chmod, mkdir, readFile, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { writeFileAtomic } from "../atomic.js";
import { EXIT, UserError } from "../errors.js";
import {
  generateEd25519,
  generateX25519,
  keyFileIsProtected,
  publicJwk,
  readKeyFile,
  selfSignedCertificate,
  thumbprint,
  writeKeyFile,
  type OkpJwk,
} from "../trustee/identity.js";
import type { Invitation } from "../trustee/protocol.js";

/**
 * A device's identity for one trustee (docs/trustee.md §7.1): a directory
 * (0700) with its Ed25519 signing key, X25519 key-agreement key (0600 each,
 * optionally sealed with an Argon2id passphrase), its self-signed TLS
 * certificate and device.json (public facts and the pinned trustee).
 * Nothing in it opens a volume without the trustee.
 */

export interface TrusteeRef {
  readonly url: string;
  readonly pin: string;
  readonly tid: string;
  readonly aid: string;
  readonly ajwk: OkpJwk;
}

export interface DeviceProfile {
  readonly v: 1;
  readonly name: string;
  readonly deviceId: string;
  readonly kemThumbprint: string;
  readonly sigJwk: OkpJwk;
  readonly kemJwk: OkpJwk;
  readonly trustee?: TrusteeRef;
  readonly sas?: string;
}

export interface DeviceKeys {
  readonly dir: string;
  readonly profile: DeviceProfile;
  readonly sig: KeyObject;
  readonly kem: KeyObject;
  readonly certificate: string;
}

const FILES = {
  profile: "device.json",
  sig: "sign.key",
  kem: "kem.key",
  cert: "device.crt",
} as const;

export function defaultDeviceDir(): string {
  const base = process.env.XDG_CONFIG_HOME || join(homedir(), ".config");
  return join(base, "cryptmount", "device");
}

export async function deviceExists(dir: string): Promise<boolean> {
  return stat(join(dir, FILES.profile)).then(
    () => true,
    () => false,
  );
}

/** Creates the device's keys (once); refuses to overwrite an existing device. */
export async function createDevice(
  dir: string,
  name: string,
  passphrase?: Buffer,
): Promise<DeviceProfile> {
  if (await deviceExists(dir))
    throw new UserError(`${dir}: a device already exists here`, EXIT.usage);
  if (!/^[\w .@-]{1,64}$/.test(name))
    throw new UserError("device name: 1 to 64 letters, digits, spaces, . _ @ -", EXIT.usage);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const sig = generateEd25519();
  const kem = generateX25519();
  await writeKeyFile(join(dir, FILES.sig), sig, passphrase);
  await writeKeyFile(join(dir, FILES.kem), kem, passphrase);
  const sigJwk = publicJwk(sig);
  const kemJwk = publicJwk(kem);
  const profile: DeviceProfile = {
    v: 1,
    name,
    deviceId: await thumbprint(sigJwk),
    kemThumbprint: await thumbprint(kemJwk),
    sigJwk,
    kemJwk,
  };
  const certificate = await selfSignedCertificate(
    sig,
    `cryptmount device ${profile.deviceId.slice(0, 16)}`,
  );
  await writeFileAtomic(join(dir, FILES.cert), certificate, 0o600);
  await writeProfile(dir, profile);
  return profile;
}

async function writeProfile(dir: string, profile: DeviceProfile): Promise<void> {
  await writeFileAtomic(join(dir, FILES.profile), JSON.stringify(profile, null, 2) + "\n", 0o600);
}

export async function readProfile(dir: string): Promise<DeviceProfile> {
  try {
    return JSON.parse(await readFile(join(dir, FILES.profile), "utf8")) as DeviceProfile;
  } catch {
    throw new UserError(
      `${dir}: no device here (cryptmount device enroll creates one)`,
      EXIT.notAVolume,
    );
  }
}

export async function setTrustee(
  dir: string,
  invitation: Invitation,
  sas?: string,
): Promise<DeviceProfile> {
  const profile = await readProfile(dir);
  const trustee: TrusteeRef = {
    url: invitation.url,
    pin: invitation.pin,
    tid: invitation.tid,
    aid: invitation.aid,
    ajwk: invitation.ajwk,
  };
  const next = { ...profile, trustee, ...(sas ? { sas } : {}) };
  await writeProfile(dir, next);
  return next;
}

export async function deviceKeysProtected(dir: string): Promise<boolean> {
  return keyFileIsProtected(join(dir, FILES.sig));
}

/** Loads the private keys (asks nothing: the caller passes the passphrase if they are sealed). */
export async function loadDevice(dir: string, passphrase?: Buffer): Promise<DeviceKeys> {
  const info = await stat(dir).catch(() => undefined);
  if (!info)
    throw new UserError(
      `${dir}: no device here (cryptmount device enroll creates one)`,
      EXIT.notAVolume,
    );
  if ((info.mode & 0o077) !== 0)
    throw new UserError(`${dir}: must not be accessible to group or others (chmod 700)`, EXIT.io);
  const profile = await readProfile(dir);
  const sig = await readKeyFile(join(dir, FILES.sig), passphrase);
  const kem = await readKeyFile(join(dir, FILES.kem), passphrase);
  if (JSON.stringify(publicJwk(createPublicKey(sig))) !== JSON.stringify(profile.sigJwk))
    throw new UserError(`${dir}: sign.key does not belong to device.json`, EXIT.io);
  const certificate = await readFile(join(dir, FILES.cert), "utf8");
  return { dir, profile, sig, kem, certificate };
}
