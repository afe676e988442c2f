import { createHash, type KeyObject } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";
import { parseOkpJwk, publicKeyFromJwk, spkiPin, thumbprint } from "./identity.js";
import { parseFlattenedJws, peekHeader, verifyJws, type FlattenedJws } from "./jws.js";
import {
  CLOCK_SKEW_MS,
  EXPORTER_LABEL,
  EXPORTER_LENGTH,
  MAX_BODY_BYTES,
  NONCE,
  NONCE_RETENTION_MS,
  PATHS,
  TYP,
  type RefusalName,
  type RequestPayload,
} from "./protocol.js";
import type { DeviceRecord } from "./store.js";
import {
  Refusal,
  exactKeys,
  isObject,
  type Authenticated,
  type TrusteeContext,
} from "./request.js";

/**
 * Request authentication for the trustee (docs/trustee.md §4.2–§4.4): the
 * client certificate names the device, the JWS is its signature, and the
 * payload is fresh (±120 s, nonce unseen) and bound to this TLS connection.
 */

/** §4.2–§4.4: the checks every request passes before a handler sees it. */
export function authenticator(
  ctx: TrusteeContext,
): (req: IncomingMessage, path: string) => Promise<Authenticated> {
  const { config, store, now } = ctx;

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

  return authenticate;
}

const exporter = (socket: TLSSocket) =>
  socket
    .exportKeyingMaterial(EXPORTER_LENGTH, EXPORTER_LABEL, Buffer.alloc(0))
    .toString("base64url");

function decodePayload(jws: FlattenedJws): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(Buffer.from(jws.payload, "base64url").toString("utf8"));
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}
