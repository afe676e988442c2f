import { randomBytes, type KeyObject } from "node:crypto";
import https from "node:https";
import { isIP } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { EXIT, UserError } from "../errors.js";
import { freshX25519, hpkeOpen, hpkeSeal } from "../crypto/hpke.js";
import { verifyApproval } from "../trustee/approval.js";
import {
  parseOkpJwk,
  publicJwk,
  publicKeyFromJwk,
  spkiPin,
  thumbprint,
  x25519Raw,
} from "../trustee/identity.js";
import { parseFlattenedJws, signJws, verifyJws } from "../trustee/jws.js";
import {
  EXPORTER_LABEL,
  EXPORTER_LENGTH,
  HPKE_INFO,
  MOUNT_KEY_BYTES,
  PATHS,
  TYP,
  VOLUME_ID,
  decodeInvitation,
  releaseAad,
  shortAuthString,
  type DepositHeader,
  type Invitation,
  type RefusalName,
  type WireDeposit,
} from "../trustee/protocol.js";
import type { DeviceKeys, TrusteeRef } from "./device.js";

/**
 * The device side of the trustee protocol (docs/trustee.md §4–§6): one
 * pinned TLS 1.3 connection with the device's client certificate, requests
 * signed and bound to that connection, responses checked against the
 * trustee's key and the request's nonce.
 */

/** The trustee refused; `rule` is the refusal's stable name. */
export class TrusteeRefusal extends UserError {
  constructor(
    readonly rule: RefusalName | string,
    readonly status: number,
    detail: string,
  ) {
    super(`trustee refused (${rule}): ${detail}`, EXIT.trusteeRefused);
    this.name = "TrusteeRefusal";
  }
}

/** Not reached, not the pinned trustee, or an answer that does not verify. */
export class TrusteeUnavailable extends UserError {
  constructor(
    readonly reason: "unreachable" | "wrong_pin" | "bad_response",
    detail: string,
  ) {
    super(
      `trustee ${reason === "wrong_pin" ? "is not the pinned one" : reason === "unreachable" ? "unreachable" : "answered wrongly"}: ${detail}`,
      EXIT.trusteeUnreachable,
    );
    this.name = "TrusteeUnavailable";
  }
}

interface Identity {
  readonly deviceId: string;
  readonly sig: KeyObject;
  readonly certificate: string;
}

export interface SentRequest {
  /** The exact body sent (tests replay it). */
  readonly body: string;
  readonly nonce: string;
}

export class TrusteeConnection {
  private readonly agent: https.Agent;
  private readonly url: URL;
  private socket: TLSSocket | undefined;
  private trusteeKey: KeyObject | undefined;
  /** Called with every request body as sent (tests). */
  onSent?: (sent: SentRequest) => void;

  constructor(
    private readonly trustee: TrusteeRef,
    private readonly identity: Identity,
    private readonly tls: {
      minVersion?: "TLSv1.2" | "TLSv1.3";
      maxVersion?: "TLSv1.2" | "TLSv1.3";
    } = {},
  ) {
    this.url = new URL(trustee.url);
    // Requests go over the one connection this object opened and checked, so
    // a request's exporter value is known before it is built.
    const current = () => this.socket!;
    this.agent = new (class extends https.Agent {
      override createConnection() {
        return current();
      }
    })({ keepAlive: true, maxSockets: 1 });
  }

  close(): void {
    this.agent.destroy();
    this.socket?.destroy();
    this.socket = undefined;
  }

  /** Drops the current connection; the next request opens a new one (tests). */
  reconnect(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  /** The pinned, handshaken connection (opened on first use or after the server closed it). */
  /** A transport failure as the user sees it; our own refusals pass through. */
  private unreachable(err: Error): UserError {
    if (err instanceof UserError) return err;
    const why = (err as NodeJS.ErrnoException).code ?? err.message;
    return new TrusteeUnavailable("unreachable", `${this.trustee.url}: ${why}`);
  }

  private async connection(): Promise<TLSSocket> {
    if (this.socket && !this.socket.destroyed && this.socket.writable) return this.socket;
    this.socket?.destroy();
    const host = this.url.hostname.replace(/^\[|\]$/g, "");
    const socket = await new Promise<TLSSocket>((resolve, reject) => {
      const s = tlsConnect({
        host,
        port: Number(this.url.port || 443),
        ...(isIP(host) ? {} : { servername: host }),
        key: this.identity.sig.export({ type: "pkcs8", format: "pem" }),
        cert: this.identity.certificate,
        // Self-signed trustee certificate: checked against the pin below, before any byte is sent.
        rejectUnauthorized: false,
        minVersion: this.tls.minVersion ?? "TLSv1.3",
        maxVersion: this.tls.maxVersion ?? "TLSv1.3",
        timeout: 30_000,
      });
      const fail = (err: Error) => {
        s.destroy();
        reject(this.unreachable(err));
      };
      s.once("error", fail);
      s.once("timeout", () => fail(new Error("timed out")));
      s.once("secureConnect", () => {
        const peer = s.getPeerX509Certificate();
        if (!peer || spkiPin(peer.publicKey) !== this.trustee.pin) {
          fail(
            new TrusteeUnavailable(
              "wrong_pin",
              `${this.trustee.url} presented another key than the pinned one`,
            ),
          );
          return;
        }
        s.removeListener("error", fail);
        s.setTimeout(0);
        s.on("error", () => s.destroy());
        this.trusteeKey = peer.publicKey;
        resolve(s);
      });
    });
    this.socket = socket;
    return socket;
  }

  /** Signs `body` for `path` on this connection and returns the verified response body. */
  async request<T = Record<string, unknown>>(
    path: string,
    body: unknown,
    kid = this.identity.deviceId,
  ): Promise<T> {
    return this.send<T>(path, async (tlsx) => {
      const nonce = randomBytes(16).toString("base64url");
      const payload = {
        aud: this.trustee.tid,
        htm: "POST",
        htu: path,
        ts: new Date().toISOString(),
        nonce,
        tlsx,
        body,
      };
      return {
        body: JSON.stringify(await signJws(payload, TYP.request, kid, this.identity.sig)),
        nonce,
      };
    });
  }

  /** Low level: `make` builds the body from the connection's exporter value. */
  async send<T>(path: string, make: (tlsx: string) => Promise<SentRequest>): Promise<T> {
    const socket = await this.connection();
    const tlsx = socket
      .exportKeyingMaterial(EXPORTER_LENGTH, EXPORTER_LABEL, Buffer.alloc(0))
      .toString("base64url");
    const sent = await make(tlsx);
    this.onSent?.(sent);
    const { status, text } = await new Promise<{ status: number; text: string }>(
      (resolve, reject) => {
        const req = https.request({
          host: this.url.hostname,
          port: Number(this.url.port || 443),
          method: "POST",
          path,
          agent: this.agent,
          headers: {
            "Content-Type": "application/jose+json",
            "Content-Length": Buffer.byteLength(sent.body),
          },
        });
        req.on("error", (err) => reject(this.unreachable(err)));
        req.on("response", (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size > 1024 * 1024)
              req.destroy(new TrusteeUnavailable("bad_response", "response too large"));
            else chunks.push(c);
          });
          res.on("end", () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
          );
          res.on("error", reject);
        });
        req.end(sent.body);
      },
    );
    if (status >= 400) {
      let problem: { rule?: string; detail?: string } = {};
      try {
        problem = JSON.parse(text);
      } catch {
        /* not a problem document */
      }
      throw new TrusteeRefusal(
        problem.rule ?? `http_${status}`,
        status,
        problem.detail ?? text.slice(0, 200),
      );
    }
    return this.verifyResponse<T>(text, path, sent.nonce);
  }

  private async verifyResponse<T>(text: string, path: string, nonce: string): Promise<T> {
    const bad = (why: string) => new TrusteeUnavailable("bad_response", why);
    let jws;
    try {
      jws = parseFlattenedJws(JSON.parse(text));
    } catch {
      throw bad("not JSON");
    }
    const key = this.trusteeKey;
    if (!jws || !key) throw bad("not a signed response");
    if ((await thumbprint(publicJwk(key))) !== this.trustee.tid)
      throw bad("the TLS key is not the trustee ID's key");
    const bytes = await verifyJws(jws, key, TYP.response);
    if (!bytes) throw bad("the response signature does not verify");
    const payload = JSON.parse(bytes.toString("utf8")) as { nonce: string; htu: string; body: T };
    if (payload.nonce !== nonce || payload.htu !== path)
      throw bad("the response answers another request");
    return payload.body;
  }
}

export function connectionFor(
  device: DeviceKeys,
  tls?: ConstructorParameters<typeof TrusteeConnection>[2],
): TrusteeConnection {
  if (!device.profile.trustee)
    throw new UserError(`${device.dir}: the device is not enrolled with a trustee`, EXIT.usage);
  return new TrusteeConnection(
    device.profile.trustee,
    { deviceId: device.profile.deviceId, sig: device.sig, certificate: device.certificate },
    tls,
  );
}

// --- operations (the API the volume side calls) ------------------------------

export interface EnrollResult {
  readonly deviceId: string;
  readonly state: string;
  readonly sas: string;
}

/** §7.2: sends the enrollment; the returned SAS was computed locally and matched the trustee's. */
export async function enroll(
  device: DeviceKeys,
  invitationText: string,
): Promise<{ result: EnrollResult; invitation: Invitation }> {
  const invitation = decodeInvitation(invitationText);
  if (!invitation) throw new UserError("not a cryptmount trustee invitation", EXIT.usage);
  if (Date.parse(invitation.exp) <= Date.now())
    throw new UserError(`the invitation expired at ${invitation.exp}`, EXIT.usage);
  if ((await thumbprint(invitation.ajwk)) !== invitation.aid)
    throw new UserError("the invitation's admin key does not match its ID", EXIT.usage);
  const ref: TrusteeRef = {
    url: invitation.url,
    pin: invitation.pin,
    tid: invitation.tid,
    aid: invitation.aid,
    ajwk: invitation.ajwk,
  };
  const conn = new TrusteeConnection(ref, {
    deviceId: device.profile.deviceId,
    sig: device.sig,
    certificate: device.certificate,
  });
  try {
    const r = await conn.request<{ device_id: string; state: string; sas: string }>(PATHS.enroll, {
      invitation: invitation.token,
      name: device.profile.name,
      sig_jwk: device.profile.sigJwk,
      kem_jwk: device.profile.kemJwk,
    });
    const sas = shortAuthString(
      device.profile.deviceId,
      device.profile.kemThumbprint,
      invitation.tid,
    );
    if (r.device_id !== device.profile.deviceId || r.sas !== sas)
      throw new TrusteeUnavailable(
        "bad_response",
        "the trustee's verification code differs from ours",
      );
    return { result: { deviceId: r.device_id, state: r.state, sas }, invitation };
  } finally {
    conn.close();
  }
}

export async function deviceStatus(
  device: DeviceKeys,
): Promise<{ device_id: string; state: string; standing: string; name: string }> {
  const conn = connectionFor(device);
  try {
    return await conn.request(PATHS.self, {});
  } finally {
    conn.close();
  }
}

export async function selfRevoke(device: DeviceKeys): Promise<void> {
  const conn = connectionFor(device);
  try {
    await conn.request(PATHS.selfRevoke, {});
  } finally {
    conn.close();
  }
}

/**
 * §8.4: registers `volumeId` under this device's volume-creation grant; the
 * trustee makes its policy (this device its only member). Refusals:
 * `no_grant`, `grant_exhausted`, `volume_exists`.
 */
export async function registerVolume(device: DeviceKeys, volumeId: string): Promise<number> {
  if (!VOLUME_ID.test(volumeId)) throw new UserError(`not a volume ID: ${volumeId}`, EXIT.usage);
  const conn = connectionFor(device);
  try {
    const r = await conn.request<{ policy_version: number }>(PATHS.register(volumeId), {});
    return r.policy_version;
  } finally {
    conn.close();
  }
}

function leaseTime(lease: unknown): string {
  const at =
    typeof lease === "object" && lease !== null
      ? (lease as { expires_at?: unknown }).expires_at
      : undefined;
  if (typeof at !== "string" || Number.isNaN(Date.parse(at)))
    throw new TrusteeUnavailable("bad_response", "the lease has no valid expires_at");
  return at;
}

/** §8.6: renews this device's lease on `volumeId`; resolves with its new end (RFC 3339). */
export async function renewLease(device: DeviceKeys, volumeId: string): Promise<string> {
  if (!VOLUME_ID.test(volumeId)) throw new UserError(`not a volume ID: ${volumeId}`, EXIT.usage);
  const conn = connectionFor(device);
  try {
    const r = await conn.request<{ volume_id: string; lease: unknown }>(PATHS.renew(volumeId), {});
    if (r.volume_id !== volumeId)
      throw new TrusteeUnavailable("bad_response", "the renewal names another volume");
    return leaseTime(r.lease);
  } finally {
    conn.close();
  }
}

export interface Member {
  readonly deviceId: string;
  readonly name: string;
  readonly kemPublic: Buffer;
  readonly kemThumbprint: string;
}

/** §6.1: the volume's members whose approvals verify against the pinned admin key. */
export async function verifiedMembers(
  device: DeviceKeys,
  volumeId: string,
  conn = connectionFor(device),
): Promise<Member[]> {
  const trustee = device.profile.trustee!;
  const r = await conn.request<{
    members: { device_id: string; name: string; kem_jwk: unknown; approval: unknown }[];
  }>(PATHS.members(volumeId), {});
  const admin = publicKeyFromJwk(trustee.ajwk);
  const out: Member[] = [];
  for (const m of r.members) {
    const kem = parseOkpJwk(m.kem_jwk, "X25519");
    if (!kem) throw new TrusteeUnavailable("bad_response", `member ${m.device_id}: bad key`);
    const approval = await verifyApproval(JSON.stringify(m.approval), trustee.aid, admin, {
      trusteeId: trustee.tid,
      deviceId: m.device_id,
      kemJwk: JSON.stringify(kem),
    });
    if (!approval)
      throw new TrusteeUnavailable(
        "bad_response",
        `member ${m.device_id} has no valid admin approval: refusing to seal to it`,
      );
    // The device ID is the thumbprint of the approved signing key.
    if ((await thumbprint(approval.sig_jwk)) !== m.device_id)
      throw new TrusteeUnavailable("bad_response", `member ${m.device_id}: ID is not its key's`);
    out.push({
      deviceId: m.device_id,
      name: m.name,
      kemPublic: Buffer.from(kem.x, "base64url"),
      kemThumbprint: await thumbprint(kem),
    });
  }
  return out;
}

/** §5.2: seals `mountKey` to one member; the header's bytes are the aad. */
export async function sealDeposit(
  volumeId: string,
  keyVersion: number,
  member: Member,
  createdBy: string,
  mountKey: Uint8Array,
): Promise<WireDeposit> {
  const hdr: DepositHeader = {
    v: 1,
    volume_id: volumeId,
    key_version: keyVersion,
    recipient: member.deviceId,
    recipient_kem: member.kemThumbprint,
    created_by: createdBy,
    created_at: new Date().toISOString(),
  };
  const hdrBytes = Buffer.from(JSON.stringify(hdr));
  const sealed = await hpkeSeal(
    member.kemPublic,
    Buffer.from(HPKE_INFO.deposit),
    hdrBytes,
    mountKey,
  );
  return {
    hdr: hdrBytes.toString("base64url"),
    enc: sealed.enc.toString("base64url"),
    ct: sealed.ct.toString("base64url"),
  };
}

/** §5.3: opens a deposit for this device; undefined when anything does not match. */
export async function openDeposit(
  device: DeviceKeys,
  d: WireDeposit,
  expect: { volumeId: string; keyVersion: number },
): Promise<Buffer | undefined> {
  let hdr: DepositHeader;
  const hdrBytes = Buffer.from(d.hdr, "base64url");
  try {
    hdr = JSON.parse(hdrBytes.toString("utf8"));
  } catch {
    return undefined;
  }
  if (
    hdr.v !== 1 ||
    hdr.volume_id !== expect.volumeId ||
    hdr.key_version !== expect.keyVersion ||
    hdr.recipient !== device.profile.deviceId ||
    hdr.recipient_kem !== device.profile.kemThumbprint
  )
    return undefined;
  const { privateRaw, publicRaw } = x25519Raw(device.kem);
  try {
    const mk = await hpkeOpen(privateRaw!, publicRaw, Buffer.from(HPKE_INFO.deposit), hdrBytes, {
      enc: Buffer.from(d.enc, "base64url"),
      ct: Buffer.from(d.ct, "base64url"),
    });
    return mk && mk.length === MOUNT_KEY_BYTES ? mk : (mk?.fill(0), undefined);
  } finally {
    privateRaw?.fill(0);
  }
}

/**
 * deposit(volumeId, mountKey, members): seals the mount key on this machine
 * to every verified member (or the listed ones) and uploads the deposits for
 * `keyVersion`, replacing that version's earlier deposits.
 */
export async function deposit(
  device: DeviceKeys,
  volumeId: string,
  mountKey: Uint8Array,
  options: { keyVersion?: number; members?: readonly string[] } = {},
): Promise<number> {
  if (!VOLUME_ID.test(volumeId)) throw new UserError(`not a volume ID: ${volumeId}`, EXIT.usage);
  if (mountKey.length !== MOUNT_KEY_BYTES)
    throw new UserError("a mount key is 32 bytes", EXIT.usage);
  const keyVersion = options.keyVersion ?? 1;
  const conn = connectionFor(device);
  try {
    let members = await verifiedMembers(device, volumeId, conn);
    if (options.members) {
      const wanted = new Set(options.members);
      members = members.filter((m) => wanted.has(m.deviceId));
      if (members.length !== wanted.size)
        throw new UserError(
          "some listed devices are not verified members of the volume",
          EXIT.usage,
        );
    }
    const deposits = [];
    for (const m of members)
      deposits.push(await sealDeposit(volumeId, keyVersion, m, device.profile.deviceId, mountKey));
    const r = await conn.request<{ stored: number }>(PATHS.deposits(volumeId), {
      key_version: keyVersion,
      deposits,
    });
    return r.stored;
  } finally {
    conn.close();
  }
}

/**
 * release(volumeId) → mount key bytes (§6.3): asks with a fresh one-time
 * X25519 key, opens the trustee's outer layer with it, then the deposit with
 * the device's key. The caller owns (and wipes) the returned buffer.
 */
export async function release(
  device: DeviceKeys,
  volumeId: string,
  options: { keyVersion?: number; conn?: TrusteeConnection } = {},
): Promise<{
  mountKey: Buffer;
  keyVersion: number;
  requestId: string;
  audit: { seq: number; hash: string };
  /** Seconds an agent may keep the key (the volume's policy, §8.2); undefined: no limit set. */
  agentTtl: number | undefined;
  /** When a mount on this key must have renewed its lease (§8.6); undefined: no lease. */
  leaseExpiresAt: string | undefined;
}> {
  if (!VOLUME_ID.test(volumeId)) throw new UserError(`not a volume ID: ${volumeId}`, EXIT.usage);
  const conn = options.conn ?? connectionFor(device);
  const eph = freshX25519();
  let nonce = "";
  const previous = conn.onSent;
  conn.onSent = (s) => {
    nonce = s.nonce;
    previous?.(s);
  };
  try {
    const body = {
      eph: { kty: "OKP", crv: "X25519", x: eph.publicRaw.toString("base64url") },
      ...(options.keyVersion ? { key_version: options.keyVersion } : {}),
    };
    const r = await conn.request<{
      request_id: string;
      volume_id: string;
      key_version: number;
      release: { enc: string; ct: string };
      audit: { seq: number; hash: string };
      agent_ttl?: number;
      lease?: { expires_at: string };
    }>(PATHS.release(volumeId), body);
    if (r.volume_id !== volumeId || (options.keyVersion && r.key_version !== options.keyVersion))
      throw new TrusteeUnavailable("bad_response", "the release names another volume or version");
    if (r.agent_ttl !== undefined && !(Number.isSafeInteger(r.agent_ttl) && r.agent_ttl >= 0))
      throw new TrusteeUnavailable("bad_response", "agent_ttl is not a number of seconds");
    const leaseExpiresAt = r.lease === undefined ? undefined : leaseTime(r.lease);
    const aad = releaseAad(volumeId, r.key_version, device.profile.deviceId, nonce, r.request_id);
    const inner = await hpkeOpen(
      eph.privateRaw,
      eph.publicRaw,
      Buffer.from(HPKE_INFO.release),
      aad,
      { enc: Buffer.from(r.release.enc, "base64url"), ct: Buffer.from(r.release.ct, "base64url") },
    );
    if (!inner)
      throw new TrusteeUnavailable(
        "bad_response",
        "the release does not open with this request's key",
      );
    const d = JSON.parse(inner.toString("utf8")) as WireDeposit;
    inner.fill(0);
    const mountKey = await openDeposit(device, d, { volumeId, keyVersion: r.key_version });
    if (!mountKey)
      throw new TrusteeUnavailable(
        "bad_response",
        "the deposit does not open with this device's key (moved or altered)",
      );
    return {
      mountKey,
      keyVersion: r.key_version,
      requestId: r.request_id,
      audit: r.audit,
      agentTtl: r.agent_ttl,
      leaseExpiresAt,
    };
  } finally {
    eph.privateRaw.fill(0);
    conn.onSent = previous;
    if (!options.conn) conn.close();
  }
}
