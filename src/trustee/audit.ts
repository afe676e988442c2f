import { createHash, sign, verify, type KeyObject } from "node:crypto";

/**
 * The audit record, its chain and its signature (docs/trustee.md §9). Pure:
 * the store appends, this module builds and checks.
 *
 *   hash = SHA-256("cryptmount/trustee/audit/v1" || 0x00 || canonical(record − {hash, sig}))
 *   sig  = Ed25519(trustee key, hash)
 *
 * `prev` is the previous record's hash (32 zero bytes for seq 1), so
 * altering, deleting, reordering or inserting a record breaks the chain at
 * that record; the store keeps the head separately to find truncation.
 */

export type AuditOutcome = "allow" | "deny" | "info";

/** What a caller says about an event; seq, ts, prev, hash and sig are added on append. */
export interface AuditEvent {
  readonly event: string;
  readonly outcome: AuditOutcome;
  readonly rule?: string | null;
  readonly device?: string | null;
  readonly volume?: string | null;
  readonly ip?: string | null;
  readonly request?: { readonly nonce: string; readonly jws_sha256: string } | null;
  readonly detail?: Readonly<Record<string, string | number | boolean | null>> | null;
}

export interface AuditRecord {
  readonly v: 1;
  readonly seq: number;
  readonly ts: string;
  readonly event: string;
  readonly outcome: AuditOutcome;
  readonly rule: string | null;
  readonly device: string | null;
  readonly volume: string | null;
  readonly ip: string | null;
  readonly request: { readonly nonce: string; readonly jws_sha256: string } | null;
  readonly detail: Readonly<Record<string, string | number | boolean | null>> | null;
  readonly prev: string;
  readonly hash: string;
  readonly sig: string;
}

export interface ChainHead {
  readonly seq: number;
  readonly hash: string;
}

export const AUDIT_DOMAIN = "cryptmount/trustee/audit/v1";
export const GENESIS_PREV = Buffer.alloc(32).toString("base64url");

/**
 * Canonical JSON (RFC 8785 restricted to what records contain: strings,
 * safe integers, booleans, null, arrays, objects): keys sorted by UTF-16
 * code units, no whitespace.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === "boolean" || typeof value === "string")
    return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new Error("audit records hold integers only");
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  throw new Error(`cannot canonicalise ${typeof value}`);
}

function recordHash(body: Omit<AuditRecord, "hash" | "sig">): Buffer {
  return createHash("sha256")
    .update(AUDIT_DOMAIN)
    .update(Buffer.from([0]))
    .update(canonicalJson(body))
    .digest();
}

/** The next record after `head` (undefined: the first record). */
export function buildRecord(
  head: ChainHead | undefined,
  event: AuditEvent,
  now: Date,
  key: KeyObject,
): AuditRecord {
  const body: Omit<AuditRecord, "hash" | "sig"> = {
    v: 1,
    seq: (head?.seq ?? 0) + 1,
    ts: now.toISOString(),
    event: event.event,
    outcome: event.outcome,
    rule: event.rule ?? null,
    device: event.device ?? null,
    volume: event.volume ?? null,
    ip: event.ip ?? null,
    request: event.request ?? null,
    detail: event.detail ?? null,
    prev: head?.hash ?? GENESIS_PREV,
  };
  const hash = recordHash(body);
  return {
    ...body,
    hash: hash.toString("base64url"),
    sig: sign(null, hash, key).toString("base64url"),
  };
}

export function serializeRecord(r: AuditRecord): string {
  return canonicalJson(r);
}

export interface AuditProblem {
  /** The first record at which the log stops being trustworthy. */
  readonly seq: number;
  readonly kind:
    | "malformed"
    | "altered"
    | "bad_signature"
    | "missing"
    | "out_of_order"
    | "broken_chain"
    | "truncated";
  readonly message: string;
}

export interface VerifyResult {
  readonly records: number;
  readonly head: ChainHead | undefined;
  readonly problem?: AuditProblem;
}

/**
 * Checks records in storage order (row order, which is seq order for an
 * untampered log) against the trustee's public key, and the log's end
 * against the separately kept head.
 */
export function verifyChain(
  rows: Iterable<{ readonly rowSeq: number; readonly text: string }>,
  publicKey: KeyObject,
  keptHead?: ChainHead,
): VerifyResult {
  let expectedSeq = 1;
  let prev = GENESIS_PREV;
  let count = 0;
  let head: ChainHead | undefined;
  const fail = (seq: number, kind: AuditProblem["kind"], message: string): VerifyResult => ({
    records: count,
    head,
    problem: { seq, kind, message },
  });
  for (const row of rows) {
    let r: AuditRecord;
    try {
      r = JSON.parse(row.text) as AuditRecord;
    } catch {
      return fail(row.rowSeq, "malformed", `record ${row.rowSeq} is not JSON`);
    }
    if (typeof r !== "object" || r === null || typeof r.seq !== "number")
      return fail(row.rowSeq, "malformed", `record ${row.rowSeq} has no sequence number`);
    if (r.seq !== row.rowSeq)
      return fail(row.rowSeq, "out_of_order", `row ${row.rowSeq} holds record ${r.seq}`);
    if (r.seq !== expectedSeq) {
      const kind = r.seq > expectedSeq ? "missing" : "out_of_order";
      return fail(expectedSeq, kind, `expected record ${expectedSeq}, found ${r.seq}`);
    }
    const { hash, sig, ...body } = r;
    let computed: Buffer;
    try {
      computed = recordHash(body);
    } catch {
      return fail(r.seq, "malformed", `record ${r.seq} has values outside the format`);
    }
    if (computed.toString("base64url") !== hash)
      return fail(r.seq, "altered", `record ${r.seq} does not match its hash`);
    if (
      typeof sig !== "string" ||
      !verify(null, computed, publicKey, Buffer.from(sig, "base64url"))
    )
      return fail(r.seq, "bad_signature", `record ${r.seq} is not signed by this trustee`);
    if (r.prev !== prev)
      return fail(r.seq, "broken_chain", `record ${r.seq} does not follow record ${r.seq - 1}`);
    if (keptHead && r.seq === keptHead.seq && hash !== keptHead.hash)
      return fail(
        r.seq,
        "broken_chain",
        `record ${r.seq} is not the record the trustee wrote there`,
      );
    prev = hash;
    head = { seq: r.seq, hash };
    count++;
    expectedSeq++;
  }
  // The kept head may lag the log (a crash between the two commits), never lead it.
  if (keptHead && keptHead.seq > 0) {
    if (!head || head.seq < keptHead.seq)
      return fail(
        (head?.seq ?? 0) + 1,
        "truncated",
        `the log ends at record ${head?.seq ?? 0} but record ${keptHead.seq} was written`,
      );
  }
  return { records: count, head };
}
