import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../log.js";
import { audit } from "./admin.js";
import type { AuditEvent } from "./audit.js";
import { verifyApproval } from "./approval.js";
import type { TrusteeHome } from "./home.js";
import { authenticator } from "./authenticate.js";
import { deviceHandlers } from "./device-handlers.js";
import { volumeHandlers } from "./volume-handlers.js";
import { publicKeyFromJwk } from "./identity.js";
import { signJws } from "./jws.js";
import { policyProblem, type DeviceStanding, type VolumePolicy } from "./policy.js";
import { PATHS, PROBLEM_BASE, REFUSALS, TYP, VOLUME_ID } from "./protocol.js";
import type { DeviceRecord } from "./store.js";
import { Refusal, type Handler, type TrusteeContext } from "./request.js";

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

  /** A stored policy this build does not fully understand is no policy (default deny). */
  async function loadPolicy(volumeId: string): Promise<VolumePolicy | undefined> {
    const p = await store.getPolicy(volumeId);
    if (p && policyProblem(p)) {
      log.warn({ volume: volumeId, problem: policyProblem(p) }, "stored policy refused");
      return undefined;
    }
    return p;
  }

  const ctx: TrusteeContext = { home, store, config, log, now, record, standingOf, loadPolicy };
  const authenticate = authenticator(ctx);
  const { enroll, self, selfRevoke } = deviceHandlers(ctx);
  const volumes = volumeHandlers(ctx);

  // --- dispatch -----------------------------------------------------------------

  function route(
    path: string,
  ): { handler: Handler; volumeId: string; standing: "none" | "self" | "policy" } | undefined {
    if (path === PATHS.enroll) return { handler: enroll, volumeId: "", standing: "none" };
    if (path === PATHS.self) return { handler: self, volumeId: "", standing: "none" };
    if (path === PATHS.selfRevoke) return { handler: selfRevoke, volumeId: "", standing: "self" };
    const m = /^\/v1\/volumes\/([^/]+)\/(members|deposits|release|register|renew)$/.exec(path);
    if (!m || !VOLUME_ID.test(m[1]!)) return undefined;
    const handler = volumes[m[2] as keyof typeof volumes];
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
