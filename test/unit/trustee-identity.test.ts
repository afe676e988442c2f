import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  generateEd25519,
  parseOkpJwk,
  publicJwk,
  selfSignedCertificate,
  spkiPin,
  thumbprint,
} from "../../src/trustee/identity.js";
import { shortAuthString } from "../../src/trustee/protocol.js";
import { buildRecord, canonicalJson, GENESIS_PREV, verifyChain } from "../../src/trustee/audit.js";
import { createPublicKey } from "node:crypto";

describe("identities", () => {
  it("self-signed Ed25519 certificates parse, verify and carry the key", async () => {
    const key = generateEd25519();
    const pem = await selfSignedCertificate(key, "cryptmount test");
    const cert = new X509Certificate(pem);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(spkiPin(cert.publicKey)).toBe(spkiPin(key));
    expect(cert.subject).toContain("cryptmount test");
    expect(cert.ca).toBe(false);
    let openssl = "";
    try {
      const dir = await mkdtemp(join(tmpdir(), "cm-cert-"));
      await writeFile(join(dir, "c.pem"), pem);
      openssl = execFileSync("openssl", ["x509", "-noout", "-text", "-in", join(dir, "c.pem")], {
        encoding: "utf8",
      });
      await rm(dir, { recursive: true });
    } catch {
      return; // no openssl on this machine
    }
    expect(openssl).toContain("ED25519");
  });

  it("JWK thumbprints follow RFC 7638 (RFC 8037 appendix A.3 example)", async () => {
    // RFC 8037 A.3: the thumbprint of the A.2 public key.
    const jwk = {
      kty: "OKP" as const,
      crv: "Ed25519" as const,
      x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    };
    expect(await thumbprint(jwk)).toBe("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
  });

  it("wire JWKs are exact: extra members, other curves, junk base64 are refused", () => {
    const x = publicJwk(generateEd25519()).x;
    expect(parseOkpJwk({ kty: "OKP", crv: "Ed25519", x }, "Ed25519")).toBeDefined();
    expect(parseOkpJwk({ kty: "OKP", crv: "Ed25519", x, d: x }, "Ed25519")).toBeUndefined();
    expect(parseOkpJwk({ kty: "OKP", crv: "X25519", x }, "Ed25519")).toBeUndefined();
    expect(
      parseOkpJwk({ kty: "OKP", crv: "Ed25519", x: x.slice(0, 42) + "=" }, "Ed25519"),
    ).toBeUndefined();
  });

  it("the verification code is 16 symbols from public values, stable", () => {
    const a = shortAuthString("d".repeat(43), "k".repeat(43), "t".repeat(43));
    expect(a).toMatch(/^[A-HJ-NP-Z2-9]{4}(-[A-HJ-NP-Z2-9]{4}){3}$/);
    expect(shortAuthString("d".repeat(43), "k".repeat(43), "t".repeat(43))).toBe(a);
    expect(shortAuthString("e".repeat(43), "k".repeat(43), "t".repeat(43))).not.toBe(a);
  });
});

describe("audit records", () => {
  it("canonical JSON sorts keys and refuses non-integers", () => {
    expect(canonicalJson({ b: 1, a: [true, null, "x"], c: { z: 1, y: 2 } })).toBe(
      '{"a":[true,null,"x"],"b":1,"c":{"y":2,"z":1}}',
    );
    expect(() => canonicalJson({ a: 1.5 })).toThrow();
  });

  it("a chain built record by record verifies; the first record's prev is 32 zero bytes", () => {
    const key = generateEd25519();
    const rows: { rowSeq: number; text: string }[] = [];
    let head: { seq: number; hash: string } | undefined;
    for (let i = 0; i < 5; i++) {
      const r = buildRecord(head, { event: "t", outcome: "info", detail: { i } }, new Date(), key);
      if (i === 0) expect(r.prev).toBe(GENESIS_PREV);
      rows.push({ rowSeq: r.seq, text: canonicalJson(r) });
      head = { seq: r.seq, hash: r.hash };
    }
    expect(verifyChain(rows, createPublicKey(key), head).problem).toBeUndefined();
    expect(verifyChain(rows, createPublicKey(generateEd25519()), head).problem?.kind).toBe(
      "bad_signature",
    );
  });
});
