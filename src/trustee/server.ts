import { createHash, randomBytes, type KeyObject } from "node:crypto";
import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Logger } from "../log.js";
import { hpkeSeal } from "../crypto/hpke.js";
import { audit, revokeDevice, tokenHash } from "./admin.js";
import type { AuditEvent } from "./audit.js";
import { verifyApproval } from "./approval.js";
import { evaluateRegistration, policyFromGrant } from "./grants.js";
import type { TrusteeHome } from "./home.js";
import { parseOkpJwk, publicKeyFromJwk, spkiPin, thumbprint } from "./identity.js";
import { parseFlattenedJws, peekHeader, signJws, verifyJws, type FlattenedJws } from "./jws.js";
import {
  evaluateMembership,
  evaluateRelease,
  evaluateStanding,
  policyProblem,
  type DeviceStanding,
  type VolumePolicy,
} from "./policy.js";
import {
  CLOCK_SKEW_MS,
  DEVICE_ID,
  EXPORTER_LABEL,
  EXPORTER_LENGTH,
  HPKE_INFO,
  MAX_BODY_BYTES,
  MOUNT_KEY_BYTES,
  NONCE,
  NONCE_RETENTION_MS,
  PATHS,
  PROBLEM_BASE,
  REFUSALS,
  TYP,
  VOLUME_ID,
  releaseAad,
  shortAuthString,
  type DepositHeader,
  type RefusalName,
  type RequestPayload,
  type WireDeposit,
} from "./protocol.js";
import type { DepositRecord, DeviceRecord } from "./store.js";

/**
 * `cryptmount trustee serve` (docs/trustee.md §4–§8): HTTPS, TLS 1.3 only,
 * client certificates required and pinned per device, every request a JWS
 * bound to the TLS connection, every decision audited before the answer.
 */

export interface ServerOptions {
  readonly host?: string;
  readonly port?: number;
  readonly logger: Logger;
  /** Injected clock (tests); defaults to the system clock. */
  readonly now?: () => Date;
}

export interface RunningTrustee {
  readonly port: number;
  readonly host: string;
  close(): Promise<void>;
}

class Refusal extends Error {
  constructor(
    readonly rule: RefusalName,
    readonly detail: string,
    readonly auditEvent: string = "request.deny",
    readonly device: string | null = null,
    readonly volume: string | null = null,
  ) {
    super(detail);
  }
}

interface Authenticated {
  readonly payload: RequestPayload<Record<string, unknown>>;
  readonly device: DeviceRecord | undefined;
  readonly deviceId: string;
  readonly jwsDigest: string;
  readonly ip: string;
}

const exporter = (socket: TLSSocket) =>
  socket
    .exportKeyingMaterial(EXPORTER_LENGTH, EXPORTER_LABEL, Buffer.alloc(0))
    .toString("base64url");

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function exactKeys(
  v: Record<string, unknown>,
  required: string[],
  optional: string[] = [],
): boolean {
  const keys = Object.keys(v);
  return (
    required.every((k) => k in v) && keys.every((k) => required.includes(k) || optional.includes(k))
  );
}

export async function startTrusteeServer(
  home: TrusteeHome,
  options: ServerOptions,
): Promise<RunningTrustee> {
  const log = options.logger;
  const now = options.now ?? (() => new Date());
  const { config, store } = home;
  const adminPublicKey = publicKeyFromJwk(config.adminJwk);

  /** Appends or refuses: a decision that cannot be audited is not carried out. */
  async function record(event: AuditEvent) {
    try {
      return await audit(home, event, now());
    } catch (err) {
      log.error({ err: (err as Error).message }, "audit append failed");
      throw new Refusal(
        "audit_unavailable",
        "the audit log cannot be written; nothing is released",
      );
    }
  }

  async function standingOf(d: DeviceRecord): Promise<DeviceStanding> {
    const approval =
      d.state === "active"
        ? await verifyApproval(d.approval, config.adminId, adminPublicKey, {
            trusteeId: config.trusteeId,
            deviceId: d.id,
            sigJwk: d.sigJwk,
            kemJwk: d.kemJwk,
          })
        : undefined;
    return {
      id: d.id,
      state: d.state,
      approvalValid: approval !== undefined,
      notAfter: approval?.not_after ?? undefined,
    };
  }

  async function readBody(req: IncomingMessage): Promise<Buffer> {
    const declared = Number(req.headers["content-length"] ?? "0");
    if (declared > MAX_BODY_BYTES)
      throw new Refusal("body_too_large", `more than ${MAX_BODY_BYTES} bytes`);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > MAX_BODY_BYTES)
        throw new Refusal("body_too_large", `more than ${MAX_BODY_BYTES} bytes`);
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks);
  }

  /** §4.2–§4.4: who is asking, and is this request fresh and for this connection? */
  async function authenticate(req: IncomingMessage, path: string): Promise<Authenticated> {
    const socket = req.socket as TLSSocket;
    const ip = socket.remoteAddress ?? "";
    const peer = socket.getPeerX509Certificate();
    if (!peer) throw new Refusal("no_client_certificate", "a client certificate is required");
    const spki = spkiPin(peer.publicKey);
    if (req.method !== "POST") throw new Refusal("method_not_allowed", "only POST");
    const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
    if (type !== "application/jose+json")
      throw new Refusal("unsupported_media_type", "Content-Type must be application/jose+json");
    const body = await readBody(req);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString("utf8"));
    } catch {
      throw new Refusal("bad_request", "the body is not JSON");
    }
    const jws = parseFlattenedJws(parsed);
    const header = jws && peekHeader(jws);
    if (!jws || !header) throw new Refusal("bad_request", "the body is not a flattened EdDSA JWS");
    const jwsDigest = createHash("sha256").update(body).digest("base64url");

    let device: DeviceRecord | undefined;
    let verifyKey: KeyObject;
    let deviceId: string;
    if (path === PATHS.enroll) {
      // The device is not registered yet: its key comes with the request and
      // must be the key of the client certificate.
      const unsafe = decodePayload(jws);
      const jwk = isObject(unsafe?.body) ? parseOkpJwk(unsafe.body.sig_jwk, "Ed25519") : undefined;
      if (!jwk) throw new Refusal("bad_request", "enrollment needs body.sig_jwk (Ed25519)");
      verifyKey = publicKeyFromJwk(jwk);
      deviceId = await thumbprint(jwk);
      if (spkiPin(verifyKey) !== spki)
        throw new Refusal("wrong_key", "the signing key is not the client certificate's key");
      if (header.kid !== deviceId)
        throw new Refusal("wrong_key", "kid is not the key's thumbprint");
    } else {
      device = await store.getDeviceBySpki(spki);
      if (!device) throw new Refusal("unknown_device", "this client certificate is not enrolled");
      deviceId = device.id;
      if (header.kid !== device.id)
        throw new Refusal(
          "wrong_key",
          "kid is not this connection's device",
          "request.deny",
          device.id,
        );
      verifyKey = publicKeyFromJwk(JSON.parse(device.sigJwk));
    }
    const bytes = await verifyJws(jws, verifyKey, TYP.request);
    if (!bytes)
      throw new Refusal("bad_signature", "the signature does not verify", "request.deny", deviceId);
    let payload: RequestPayload<Record<string, unknown>>;
    try {
      payload = JSON.parse(bytes.toString("utf8"));
    } catch {
      throw new Refusal("bad_request", "the payload is not JSON", "request.deny", deviceId);
    }
    const deny = (rule: RefusalName, detail: string) =>
      new Refusal(rule, detail, "request.deny", deviceId);
    if (
      !isObject(payload) ||
      !exactKeys(payload, ["aud", "htm", "htu", "ts", "nonce", "tlsx", "body"]) ||
      !isObject(payload.body)
    )
      throw deny("bad_request", "the payload has missing or unknown members");
    if (payload.aud !== config.trusteeId) throw deny("wrong_audience", "aud is not this trustee");
    if (payload.htm !== "POST" || payload.htu !== path)
      throw deny("wrong_target", "htm/htu do not match the request");
    const ts = typeof payload.ts === "string" ? Date.parse(payload.ts) : NaN;
    const t = now().getTime();
    if (!Number.isFinite(ts) || Math.abs(t - ts) > CLOCK_SKEW_MS)
      throw deny("stale_timestamp", "ts is more than 120 s from the trustee's clock");
    if (payload.tlsx !== exporter(socket))
      throw deny("channel_binding", "the request was made for another TLS connection");
    if (typeof payload.nonce !== "string" || !NONCE.test(payload.nonce))
      throw deny("bad_request", "nonce must be 16 random bytes, base64url");
    if (!(await store.rememberNonce(deviceId, payload.nonce, t + NONCE_RETENTION_MS, t)))
      throw deny("replay", "this request was already received");
    return { payload, device, deviceId, jwsDigest, ip };
  }

  /** A stored policy this build does not fully understand is no policy (default deny). */
  async function loadPolicy(volumeId: string): Promise<VolumePolicy | undefined> {
    const p = await store.getPolicy(volumeId);
    if (p && policyProblem(p)) {
      log.warn({ volume: volumeId, problem: policyProblem(p) }, "stored policy refused");
      return undefined;
    }
    return p;
  }

  function requestInfo(a: Authenticated) {
    return { nonce: a.payload.nonce, jws_sha256: a.jwsDigest };
  }

  // --- handlers -------------------------------------------------------------

  async function enroll(a: Authenticated): Promise<[number, unknown]> {
    const b = a.payload.body;
    const sig = parseOkpJwk(b.sig_jwk, "Ed25519");
    const kem = parseOkpJwk(b.kem_jwk, "X25519");
    if (
      !exactKeys(b, ["invitation", "name", "sig_jwk", "kem_jwk"]) ||
      typeof b.invitation !== "string" ||
      typeof b.name !== "string" ||
      !/^[\w .@-]{1,64}$/.test(b.name) ||
      !sig ||
      !kem
    )
      throw new Refusal(
        "bad_request",
        "enrollment body: invitation, name, sig_jwk, kem_jwk",
        "enroll.deny",
        a.deviceId,
      );
    const kemThumbprint = await thumbprint(kem);
    const t = now();
    const device: DeviceRecord = {
      id: a.deviceId,
      name: b.name,
      state: "pending",
      sigJwk: JSON.stringify(sig),
      kemJwk: JSON.stringify(kem),
      kemThumbprint,
      spki: spkiPin(publicKeyFromJwk(sig)),
      approval: null,
      createdAt: t.toISOString(),
      approvedAt: null,
      revokedAt: null,
      revokeReason: null,
    };
    const outcome = await store.enrollDevice(tokenHash(b.invitation), t, device);
    if (outcome !== "ok")
      throw new Refusal(
        outcome,
        outcome === "invitation_invalid"
          ? "the invitation is unknown, used or expired"
          : "this device is already enrolled",
        "enroll.deny",
        a.deviceId,
      );
    const sas = shortAuthString(a.deviceId, kemThumbprint, config.trusteeId);
    await record({
      event: "enroll",
      outcome: "allow",
      device: a.deviceId,
      ip: a.ip,
      request: requestInfo(a),
      detail: { name: b.name },
    });
    return [201, { device_id: a.deviceId, state: "pending", sas }];
  }

  async function self(a: Authenticated): Promise<[number, unknown]> {
    const d = a.device!;
    if (d.state === "revoked")
      throw new Refusal("device_revoked", "the device was revoked", "request.deny", d.id);
    const standing = await standingOf(d);
    const decision = evaluateStanding(standing, now());
    return [
      200,
      {
        device_id: d.id,
        name: d.name,
        state: d.state,
        standing: decision.allow ? "ok" : decision.rule,
        approval: d.approval ? JSON.parse(d.approval) : null,
      },
    ];
  }

  async function selfRevoke(a: Authenticated): Promise<[number, unknown]> {
    // Any device not yet revoked may revoke itself (pending, expired, active).
    const d = a.device!;
    if (d.state === "revoked")
      throw new Refusal("device_revoked", "the device was revoked", "request.deny", d.id);
    await revokeDevice(home, d.id, "self-revoked", "self", now());
    return [200, { device_id: d.id, state: "revoked" }];
  }

  async function members(a: Authenticated, volumeId: string): Promise<[number, unknown]> {
    const d = a.device!;
    const policy = await loadPolicy(volumeId);
    const decision = evaluateMembership(await standingOf(d), policy, now());
    if (!decision.allow)
      throw new Refusal(decision.rule, decision.detail, "request.deny", d.id, volumeId);
    const list = [];
    for (const id of policy!.members) {
      const m = await store.getDevice(id);
      if (!m || m.state !== "active") continue;
      if (!evaluateStanding(await standingOf(m), now()).allow) continue;
      list.push({
        device_id: m.id,
        name: m.name,
        kem_jwk: JSON.parse(m.kemJwk),
        approval: JSON.parse(m.approval!),
      });
    }
    return [200, { volume_id: volumeId, policy_version: policy!.version, members: list }];
  }

  async function deposits(a: Authenticated, volumeId: string): Promise<[number, unknown]> {
    const d = a.device!;
    const policy = await loadPolicy(volumeId);
    const decision = evaluateMembership(await standingOf(d), policy, now());
    if (!decision.allow)
      throw new Refusal(decision.rule, decision.detail, "deposit.deny", d.id, volumeId);
    const b = a.payload.body;
    const bad = (detail: string) =>
      new Refusal("deposit_invalid", detail, "deposit.deny", d.id, volumeId);
    if (
      !exactKeys(b, ["key_version", "deposits"]) ||
      !Number.isSafeInteger(b.key_version) ||
      (b.key_version as number) < 1 ||
      !Array.isArray(b.deposits) ||
      b.deposits.length === 0 ||
      b.deposits.length > 256
    )
      throw bad("body: key_version (≥ 1) and 1 to 256 deposits");
    const keyVersion = b.key_version as number;
    const recordsOut: DepositRecord[] = [];
    const seen = new Set<string>();
    for (const raw of b.deposits as unknown[]) {
      if (
        !isObject(raw) ||
        !exactKeys(raw, ["hdr", "enc", "ct"]) ||
        typeof raw.hdr !== "string" ||
        typeof raw.enc !== "string" ||
        typeof raw.ct !== "string"
      )
        throw bad("each deposit is {hdr, enc, ct}");
      const w = raw as unknown as WireDeposit;
      let hdr: DepositHeader;
      try {
        hdr = JSON.parse(Buffer.from(w.hdr, "base64url").toString("utf8"));
      } catch {
        throw bad("hdr is not base64url JSON");
      }
      if (
        !isObject(hdr) ||
        hdr.v !== 1 ||
        hdr.volume_id !== volumeId ||
        hdr.key_version !== keyVersion ||
        hdr.created_by !== d.id ||
        typeof hdr.recipient !== "string" ||
        !DEVICE_ID.test(hdr.recipient) ||
        typeof hdr.created_at !== "string"
      )
        throw bad("hdr does not name this volume, version and depositor");
      if (
        Buffer.from(w.enc, "base64url").length !== 32 ||
        Buffer.from(w.ct, "base64url").length !== MOUNT_KEY_BYTES + 16
      )
        throw bad("enc must be 32 bytes and ct a sealed 32-byte key");
      if (seen.has(hdr.recipient)) throw bad("two deposits for one recipient");
      seen.add(hdr.recipient);
      const r = await store.getDevice(hdr.recipient);
      if (
        !r ||
        !policy!.members.includes(r.id) ||
        !evaluateStanding(await standingOf(r), now()).allow
      )
        throw bad(`recipient ${hdr.recipient} is not an active member`);
      if (hdr.recipient_kem !== r.kemThumbprint) throw bad(`recipient_kem is not ${r.id}'s key`);
      recordsOut.push({
        volumeId,
        keyVersion,
        recipient: r.id,
        hdr: w.hdr,
        enc: w.enc,
        ct: w.ct,
        createdBy: d.id,
        createdAt: now().toISOString(),
      });
    }
    await store.putDeposits(volumeId, keyVersion, recordsOut);
    await record({
      event: "deposit.put",
      outcome: "allow",
      device: d.id,
      volume: volumeId,
      ip: a.ip,
      request: requestInfo(a),
      detail: { key_version: keyVersion, recipients: recordsOut.length },
    });
    return [201, { volume_id: volumeId, key_version: keyVersion, stored: recordsOut.length }];
  }

  /** §8.4: a device with a grant registers a new volume name; its policy comes from the grant. */
  async function register(a: Authenticated, volumeId: string): Promise<[number, unknown]> {
    const d = a.device!;
    const deny = (rule: RefusalName, detail: string) =>
      new Refusal(rule, detail, "volume.register.deny", d.id, volumeId);
    if (!exactKeys(a.payload.body, [])) throw deny("bad_request", "the body is {}");
    const grant = await store.getGrant(d.id);
    const decision = evaluateRegistration(
      await standingOf(d),
      grant,
      await store.countRegistered(d.id),
      now(),
    );
    if (!decision.allow) throw deny(decision.rule, decision.detail);
    const policy = policyFromGrant(grant!, volumeId);
    // The insert decides races (name taken, budget used up); a policy whose
    // creation cannot be audited is taken back (fail closed).
    const outcome = await store.registerVolume(policy, grant!.maxVolumes, now());
    if (outcome === "volume_exists")
      throw deny("volume_exists", "a policy with this name exists already");
    if (outcome === "grant_exhausted")
      throw deny("grant_exhausted", `the device has registered ${grant!.maxVolumes} volumes`);
    try {
      await record({
        event: "volume.register",
        outcome: "allow",
        device: d.id,
        volume: volumeId,
        ip: a.ip,
        request: requestInfo(a),
        detail: { policy_version: policy.version },
      });
    } catch (err) {
      await store.removePolicy(volumeId);
      throw err;
    }
    return [201, { volume_id: volumeId, policy_version: policy.version }];
  }

  async function release(a: Authenticated, volumeId: string): Promise<[number, unknown]> {
    const d = a.device!;
    const b = a.payload.body;
    const eph = parseOkpJwk(b.eph, "X25519");
    if (
      !exactKeys(b, ["eph"], ["key_version"]) ||
      !eph ||
      (b.key_version !== undefined &&
        (!Number.isSafeInteger(b.key_version) || (b.key_version as number) < 1))
    )
      throw new Refusal(
        "bad_request",
        "body: eph (X25519 JWK) and optional key_version",
        "release.deny",
        d.id,
        volumeId,
      );
    const t = now();
    const policy = await loadPolicy(volumeId);
    const rateWindow = (policy?.rate?.per ?? 0) * 1000;
    const decision = evaluateRelease({
      device: await standingOf(d),
      policy,
      now: t,
      sourceAddress: a.ip,
      recentReleases: policy?.rate
        ? await store.recentReleases(d.id, volumeId, t.getTime() - rateWindow)
        : [],
    });
    if (!decision.allow)
      throw new Refusal(decision.rule, decision.detail, "release.deny", d.id, volumeId);
    const deposit = await store.getDeposit(volumeId, d.id, b.key_version as number | undefined);
    if (!deposit)
      throw new Refusal(
        "no_deposit",
        "no deposit for this device at this version",
        "release.deny",
        d.id,
        volumeId,
      );
    const requestId = "r_" + randomBytes(16).toString("base64url");
    // Fail closed: the release is audited before anything leaves.
    const entry = await record({
      event: "release",
      outcome: "allow",
      rule: "ok",
      device: d.id,
      volume: volumeId,
      ip: a.ip,
      request: requestInfo(a),
      detail: {
        key_version: deposit.keyVersion,
        request_id: requestId,
        policy_version: policy!.version,
      },
    });
    await store.recordRelease(d.id, volumeId, t.getTime());
    const aad = releaseAad(volumeId, deposit.keyVersion, d.id, a.payload.nonce, requestId);
    const inner = Buffer.from(
      JSON.stringify({ hdr: deposit.hdr, enc: deposit.enc, ct: deposit.ct }),
    );
    const sealed = await hpkeSeal(
      Buffer.from(eph.x, "base64url"),
      Buffer.from(HPKE_INFO.release),
      aad,
      inner,
    );
    return [
      200,
      {
        request_id: requestId,
        volume_id: volumeId,
        key_version: deposit.keyVersion,
        release: { enc: sealed.enc.toString("base64url"), ct: sealed.ct.toString("base64url") },
        audit: { seq: entry.seq, hash: entry.hash },
        ...(policy!.agentTtl !== undefined ? { agent_ttl: policy!.agentTtl } : {}),
      },
    ];
  }

  // --- dispatch -----------------------------------------------------------------

  type Route = (a: Authenticated, volumeId: string) => Promise<[number, unknown]>;
  function route(
    path: string,
  ): { handler: Route; volumeId: string; standing: "none" | "self" | "policy" } | undefined {
    if (path === PATHS.enroll) return { handler: enroll, volumeId: "", standing: "none" };
    if (path === PATHS.self) return { handler: self, volumeId: "", standing: "none" };
    if (path === PATHS.selfRevoke) return { handler: selfRevoke, volumeId: "", standing: "self" };
    const m = /^\/v1\/volumes\/([^/]+)\/(members|deposits|release|register)$/.exec(path);
    if (!m || !VOLUME_ID.test(m[1]!)) return undefined;
    const handlers = { members, deposits, release, register };
    const handler = handlers[m[2] as keyof typeof handlers];
    return { handler, volumeId: m[1]!, standing: "policy" };
  }

  async function respond(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    const path = (req.url ?? "/").split("?")[0]!;
    const ip = req.socket.remoteAddress ?? "";
    let status = 500;
    let rule: string | undefined;
    let deviceId: string | null = null;
    try {
      const r = route(path);
      if (!r) throw new Refusal("not_found", `no endpoint ${path}`);
      const a = await authenticate(req, path);
      deviceId = a.deviceId;
      const [code, body] = await r.handler(a, r.volumeId);
      const signed = await signJws(
        { nonce: a.payload.nonce, htu: path, ts: now().toISOString(), body },
        TYP.response,
        config.trusteeId,
        home.key,
      );
      status = code;
      send(res, code, "application/jose+json", JSON.stringify(signed));
    } catch (err) {
      let refusal: Refusal;
      if (err instanceof Refusal) refusal = err;
      else {
        log.error({ err: (err as Error).message, path }, "request failed");
        refusal = new Refusal("internal", "internal error");
      }
      rule = refusal.rule;
      deviceId = refusal.device ?? deviceId;
      if (refusal.rule !== "internal" && refusal.rule !== "audit_unavailable") {
        try {
          await record({
            event: refusal.auditEvent,
            outcome: "deny",
            rule: refusal.rule,
            device: deviceId,
            volume: refusal.volume,
            ip,
            detail: { path },
          });
        } catch (e) {
          refusal = e as Refusal; // audit_unavailable
        }
      }
      rule = refusal.rule;
      status = REFUSALS[refusal.rule];
      const problem = {
        type: PROBLEM_BASE + refusal.rule,
        title: refusal.rule.replace(/_/g, " "),
        status,
        detail: refusal.detail,
        rule: refusal.rule,
      };
      if (!res.headersSent) {
        if (status === 429) res.setHeader("Retry-After", "60");
        send(res, status, "application/problem+json", JSON.stringify(problem));
      }
    } finally {
      log.info(
        { method: req.method, path, status, rule, device: deviceId, ip, ms: Date.now() - started },
        "request",
      );
    }
  }

  function send(res: ServerResponse, status: number, type: string, body: string): void {
    res.writeHead(status, {
      "Content-Type": type,
      "Content-Length": Buffer.byteLength(body),
      "Cache-Control": "no-store",
    });
    res.end(body);
  }

  const server = https.createServer(
    {
      key: home.key.export({ type: "pkcs8", format: "pem" }),
      cert: home.certificate,
      minVersion: "TLSv1.3",
      maxVersion: "TLSv1.3",
      requestCert: true,
      // Client certificates are self-signed and pinned per device by the
      // application (authenticate), not validated through a CA.
      rejectUnauthorized: false,
    },
    (req, res) => {
      void respond(req, res);
    },
  );
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.on("tlsClientError", (err, socket) => {
    const code = (err as NodeJS.ErrnoException).code ?? "TLS_ERROR";
    log.info({ ip: socket.remoteAddress, code }, "TLS handshake refused");
    void record({
      event: "tls.refused",
      outcome: "deny",
      rule: "tls_handshake",
      ip: socket.remoteAddress ?? null,
      detail: { code },
    }).catch(() => undefined);
  });
  server.on("clientError", (_err, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? config.listen.port, options.host ?? config.listen.host, () =>
      resolve(),
    );
  });
  const address = server.address() as AddressInfo;
  log.info(
    { host: address.address, port: address.port, trustee: config.trusteeId },
    "trustee listening",
  );
  return {
    host: address.address,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function decodePayload(jws: FlattenedJws): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(Buffer.from(jws.payload, "base64url").toString("utf8"));
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}
