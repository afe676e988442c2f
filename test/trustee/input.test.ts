// Bad input gets a 4xx problem document (RFC 9457), never a stack trace.

import https from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectionFor, TrusteeRefusal } from "../../src/agent/trustee-client.js";
import type { DeviceKeys } from "../../src/agent/device.js";
import { PATHS } from "../../src/trustee/protocol.js";
import { enrolled, policy, startFixture, VOLUME, type Fixture } from "./helpers.js";

interface Reply {
  status: number;
  type: string;
  body: Record<string, unknown>;
}

function raw(
  f: Fixture,
  device: DeviceKeys | undefined,
  options: { method?: string; path: string; type?: string; body?: Buffer | string },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: "127.0.0.1",
      port: f.server.port,
      method: options.method ?? "POST",
      path: options.path,
      agent: false,
      rejectUnauthorized: false,
      minVersion: "TLSv1.3",
      ...(device
        ? { key: device.sig.export({ type: "pkcs8", format: "pem" }), cert: device.certificate }
        : {}),
      headers: { "Content-Type": options.type ?? "application/jose+json" },
    });
    req.on("error", reject);
    req.on("response", (res) => {
      let text = "";
      res.on("data", (c) => (text += c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          type: String(res.headers["content-type"]),
          body: JSON.parse(text),
        }),
      );
    });
    req.end(options.body ?? "");
  });
}

function isProblem(r: Reply, status: number, rule: string) {
  expect(r.status).toBe(status);
  expect(r.type).toBe("application/problem+json");
  expect(r.body).toMatchObject({ status, rule, type: `urn:cryptmount:trustee:problem:${rule}` });
  expect(typeof r.body.title).toBe("string");
  expect(JSON.stringify(r.body)).not.toMatch(/\bat .*\.(ts|js):\d+/);
}

describe("malformed and oversized requests", () => {
  let f: Fixture;
  let device: DeviceKeys;
  beforeAll(async () => {
    f = await startFixture();
    device = (await enrolled(f, "fuzz")).device;
    await policy(f, [device]);
  });
  afterAll(async () => {
    await f.cleanup();
  });

  it("no client certificate: 401", async () => {
    isProblem(
      await raw(f, undefined, { path: PATHS.self, body: "{}" }),
      401,
      "no_client_certificate",
    );
  });

  it("unknown endpoint 404, wrong method 405, wrong media type 415", async () => {
    isProblem(await raw(f, device, { path: "/v1/nothing", body: "{}" }), 404, "not_found");
    isProblem(
      await raw(f, device, { path: PATHS.self, method: "PUT", body: "{}" }),
      405,
      "method_not_allowed",
    );
    isProblem(
      await raw(f, device, { path: PATHS.self, type: "application/json", body: "{}" }),
      415,
      "unsupported_media_type",
    );
  });

  it("a body over 64 KiB: 413", async () => {
    isProblem(
      await raw(f, device, { path: PATHS.self, body: Buffer.alloc(70 * 1024, 0x61) }),
      413,
      "body_too_large",
    );
  });

  it("not JSON, not a JWS, a JWS with junk: 400", async () => {
    isProblem(await raw(f, device, { path: PATHS.self, body: "{not json" }), 400, "bad_request");
    isProblem(await raw(f, device, { path: PATHS.self, body: '{"a":1}' }), 400, "bad_request");
    isProblem(
      await raw(f, device, {
        path: PATHS.self,
        body: '{"protected":"!!","payload":"x","signature":"y"}',
      }),
      400,
      "bad_request",
    );
    isProblem(await raw(f, device, { path: PATHS.self, body: "[]" }), 400, "bad_request");
  });

  it("a signed request with unknown members or a bad body: 400", async () => {
    const conn = connectionFor(device);
    try {
      const e1 = await conn
        .request(PATHS.release(VOLUME), { eph: { kty: "OKP", crv: "X25519", x: "short" } })
        .catch((e: unknown) => e);
      expect(e1).toBeInstanceOf(TrusteeRefusal);
      expect(e1).toMatchObject({ rule: "bad_request", status: 400 });
      const e2 = await conn
        .request(PATHS.deposits(VOLUME), {
          key_version: 1,
          deposits: [{ hdr: "x", enc: "y", ct: "z", extra: 1 }],
        })
        .catch((e: unknown) => e);
      expect(e2).toMatchObject({ rule: "deposit_invalid", status: 400 });
      const e3 = await conn
        .request(PATHS.deposits(VOLUME), { key_version: 0.5, deposits: [] })
        .catch((e: unknown) => e);
      expect(e3).toMatchObject({ rule: "deposit_invalid", status: 400 });
    } finally {
      conn.close();
    }
  });

  it("the server keeps serving, and nothing it logged carries a stack", async () => {
    const ok = await raw(f, device, { path: "/v1/nothing", body: "" });
    expect(ok.status).toBe(404);
    expect(f.logs.join("")).not.toMatch(/"stack"/);
  });
});
