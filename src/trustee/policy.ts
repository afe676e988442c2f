import { BlockList, isIP } from "node:net";
import type { RefusalName } from "./protocol.js";

/**
 * The release policy engine (docs/trustee.md §8): a pure function of the
 * request, the device, the volume's policy, the clock and the release
 * history. Default deny: every rule must pass, the first failure names the
 * refusal. No I/O here; the server gathers the inputs.
 */

export type DeviceState = "pending" | "active" | "revoked";

/** What the policy needs to know about a device (the store holds more). */
export interface DeviceStanding {
  readonly id: string;
  readonly state: DeviceState;
  /** The admin approval verified against the admin key (checked by the caller). */
  readonly approvalValid: boolean;
  /** From the verified approval: the device is refused after this instant. */
  readonly notAfter?: string | undefined;
}

export const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] as const;
export type Day = (typeof DAYS)[number];

/** Local wall-clock window in an IANA zone; from > to wraps past midnight. */
export interface TimeWindow {
  readonly days: readonly Day[];
  readonly from: string; // "HH:MM"
  readonly to: string; // "HH:MM", exclusive
  readonly tz: string;
}

export interface RateLimit {
  /** At most n releases per device and volume in any `per` seconds. */
  readonly n: number;
  readonly per: number;
}

export interface VolumePolicy {
  readonly volumeId: string;
  readonly version: number;
  /** Device IDs allowed to hold deposits and ask for releases. */
  readonly members: readonly string[];
  readonly notBefore?: string | undefined;
  readonly notAfter?: string | undefined;
  /** When present and non-empty, a release must fall inside one of them. */
  readonly windows?: readonly TimeWindow[] | undefined;
  /** When present and non-empty, the peer address must be inside one. */
  readonly sourceCidrs?: readonly string[] | undefined;
  readonly rate?: RateLimit | undefined;
  /**
   * Seconds a key agent may keep a key released under this policy (§8.2,
   * §11); 0: not at all, so every mount asks and a revocation takes effect
   * at the next mount. Absent: the agent's own TTLs.
   */
  readonly agentTtl?: number | undefined;
  /** The device that registered the volume under a grant (§8.4); absent when the admin made it. */
  readonly createdBy?: string | undefined;
  /**
   * Seconds a mount may run on one release or renewal (§8.6): the mount
   * renews before the lease ends and unmounts when a renewal is refused or
   * the lease runs out. Absent: no lease, a mount runs until unmounted.
   */
  readonly leaseTtl?: number | undefined;
  // Reserved, not implemented (docs/trustee.md §8.3): approvals {k, of, ttl}.
  // A policy that sets them is refused at load time, so nobody believes a
  // rule is enforced when it is not.
}

export type Decision =
  | { readonly allow: true }
  | { readonly allow: false; readonly rule: RefusalName; readonly detail: string };

const deny = (rule: RefusalName, detail: string): Decision => ({ allow: false, rule, detail });
const ALLOW: Decision = { allow: true };

/** §8.1: may this device talk to the trustee at all (beyond enrollment)? */
export function evaluateStanding(device: DeviceStanding, now: Date): Decision {
  if (device.state === "revoked") return deny("device_revoked", "the device was revoked");
  if (device.state === "pending") return deny("device_pending", "the device awaits approval");
  if (!device.approvalValid)
    return deny("device_approval_invalid", "the device's approval does not verify");
  if (device.notAfter !== undefined && now.getTime() >= Date.parse(device.notAfter))
    return deny("device_expired", `the device's approval ended at ${device.notAfter}`);
  return ALLOW;
}

/** §8.2 membership: deposits and member listings need only standing and membership. */
export function evaluateMembership(
  device: DeviceStanding,
  policy: VolumePolicy | undefined,
  now: Date,
): Decision {
  const standing = evaluateStanding(device, now);
  if (!standing.allow) return standing;
  if (!policy) return deny("no_policy", "no policy for this volume (default deny)");
  if (!policy.members.includes(device.id))
    return deny("not_member", "the device is not on the volume's allow-list");
  return ALLOW;
}

export interface ReleaseInput {
  readonly device: DeviceStanding;
  readonly policy: VolumePolicy | undefined;
  readonly now: Date;
  /** Peer address of the TCP connection. */
  readonly sourceAddress: string;
  /** Times (ms) of earlier releases of this volume to this device, any order. */
  readonly recentReleases: readonly number[];
}

/** §8.2: the full release decision, rules in the documented order. */
export function evaluateRelease(input: ReleaseInput): Decision {
  const { device, policy, now } = input;
  const member = evaluateMembership(device, policy, now);
  if (!member.allow || !policy) return member;
  const t = now.getTime();
  if (policy.notBefore !== undefined && t < Date.parse(policy.notBefore))
    return deny("volume_not_yet_valid", `releases start at ${policy.notBefore}`);
  if (policy.notAfter !== undefined && t >= Date.parse(policy.notAfter))
    return deny("volume_expired", `releases ended at ${policy.notAfter}`);
  if (policy.windows && policy.windows.length > 0) {
    if (!policy.windows.some((w) => insideWindow(w, now)))
      return deny("outside_time_window", "outside every allowed time window");
  }
  if (policy.sourceCidrs && policy.sourceCidrs.length > 0) {
    if (!addressInRanges(input.sourceAddress, policy.sourceCidrs))
      return deny("source_address", `source address ${input.sourceAddress} not allowed`);
  }
  if (policy.rate) {
    const since = t - policy.rate.per * 1000;
    const used = input.recentReleases.filter((r) => r > since && r <= t).length;
    if (used >= policy.rate.n)
      return deny("rate_limited", `${used} releases in the last ${policy.rate.per} s`);
  }
  // Later (§8.3): k-of-n approvals would answer "pending" here. The lease
  // of an allowed release is leaseEnd() below.
  return ALLOW;
}

/**
 * §8.6: when the lease of an allowed release or renewal ends: `leaseTtl`
 * from now, but never past the policy's `notAfter` or the device's own end,
 * so renewing never outlasts a limit. Undefined: the policy sets no lease.
 */
export function leaseEnd(
  policy: VolumePolicy,
  device: DeviceStanding,
  now: Date,
): Date | undefined {
  if (policy.leaseTtl === undefined) return undefined;
  const ends = [now.getTime() + policy.leaseTtl * 1000];
  for (const limit of [policy.notAfter, device.notAfter])
    if (limit !== undefined) ends.push(Date.parse(limit));
  return new Date(Math.min(...ends));
}

// --- time windows -----------------------------------------------------------

const HHMM = /^([01]\d|2[0-3]):([0-5]\d)$/;

function minutes(hhmm: string): number {
  const m = HHMM.exec(hhmm);
  if (!m) throw new Error(`bad time ${hhmm}`);
  return Number(m[1]) * 60 + Number(m[2]);
}

/** Local weekday and minute of day of `now` in `tz`, through Intl (full ICU). */
export function localTime(now: Date, tz: string): { day: Day; minute: number } {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: tz,
    weekday: "short",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  }).formatToParts(now);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
  const day = get("weekday").toLowerCase().slice(0, 3) as Day;
  return { day, minute: Number(get("hour")) * 60 + Number(get("minute")) };
}

/**
 * Inside when the local day is listed and from ≤ time < to. A window with
 * from > to spans midnight: it starts on a listed day and runs into the next.
 */
export function insideWindow(w: TimeWindow, now: Date): boolean {
  const { day, minute } = localTime(now, w.tz);
  const from = minutes(w.from);
  const to = minutes(w.to);
  if (from <= to) return w.days.includes(day) && minute >= from && minute < to;
  if (minute >= from) return w.days.includes(day);
  const yesterday = DAYS[(DAYS.indexOf(day) + 6) % 7]!;
  return minute < to && w.days.includes(yesterday);
}

export function validTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** "mon-fri 07:00-20:00 Europe/Berlin" or "sat,sun 00:00-23:59 UTC". */
export function parseWindow(text: string): TimeWindow | undefined {
  const m = /^\s*([a-z,-]+)\s+(\d\d:\d\d)-(\d\d:\d\d)\s+(\S+)\s*$/i.exec(text);
  if (!m) return undefined;
  const [, dayText, from, to, tz] = m as unknown as [string, string, string, string, string];
  if (!HHMM.test(from) || !HHMM.test(to) || !validTimeZone(tz)) return undefined;
  const days = new Set<Day>();
  for (const part of dayText.toLowerCase().split(",")) {
    const [a, b] = part.split("-");
    const i = DAYS.indexOf(a as Day);
    const j = b === undefined ? i : DAYS.indexOf(b as Day);
    if (i < 0 || j < 0) return undefined;
    for (let k = i; ; k = (k + 1) % 7) {
      days.add(DAYS[k]!);
      if (k === j) break;
    }
  }
  return { days: DAYS.filter((d) => days.has(d)), from, to, tz };
}

// --- address ranges -----------------------------------------------------------

/** "10.0.0.0/8", "2001:db8::/32", or a single address. */
export function parseCidr(
  text: string,
): { address: string; prefix: number; family: 4 | 6 } | undefined {
  const [address, prefixText] = text.trim().split("/");
  const family = isIP(address ?? "");
  if (!address || (family !== 4 && family !== 6)) return undefined;
  const max = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (prefixText ?? "0") === "")
    return undefined;
  return { address, prefix, family };
}

/** IPv4-mapped IPv6 peers (::ffff:a.b.c.d, as dual-stack sockets report) count as IPv4. */
function normalizeAddress(address: string): { address: string; family: "ipv4" | "ipv6" } {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return { address: mapped[1]!, family: "ipv4" };
  return { address, family: isIP(address) === 6 ? "ipv6" : "ipv4" };
}

export function addressInRanges(address: string, cidrs: readonly string[]): boolean {
  if (isIP(address) === 0) return false;
  const list = new BlockList();
  for (const c of cidrs) {
    const r = parseCidr(c);
    if (r) list.addSubnet(r.address, r.prefix, r.family === 4 ? "ipv4" : "ipv6");
  }
  const a = normalizeAddress(address);
  return list.check(a.address, a.family);
}

/** "10/3600": ten releases per hour. */
export function parseRate(text: string): RateLimit | undefined {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const per = Number(m[2]);
  return n >= 1 && per >= 1 && Number.isSafeInteger(n) && Number.isSafeInteger(per)
    ? { n, per }
    : undefined;
}

/** Checks a policy from storage or the CLI; returns a problem or undefined. */
const POLICY_MEMBERS = new Set([
  "volumeId",
  "version",
  "members",
  "notBefore",
  "notAfter",
  "windows",
  "sourceCidrs",
  "rate",
  "agentTtl",
  "leaseTtl",
  "createdBy",
]);

export function policyProblem(p: VolumePolicy): string | undefined {
  for (const k of Object.keys(p))
    if (!POLICY_MEMBERS.has(k)) return `policy member ${k} is not supported by this trustee`;
  for (const w of p.windows ?? []) {
    if (!HHMM.test(w.from) || !HHMM.test(w.to)) return `bad window time ${w.from}-${w.to}`;
    if (!validTimeZone(w.tz)) return `unknown time zone ${w.tz}`;
    if (w.days.length === 0 || w.days.some((d) => !DAYS.includes(d))) return "bad window days";
  }
  for (const c of p.sourceCidrs ?? []) if (!parseCidr(c)) return `bad address range ${c}`;
  if (p.agentTtl !== undefined && (!Number.isSafeInteger(p.agentTtl) || p.agentTtl < 0))
    return `bad agent TTL ${p.agentTtl}`;
  if (p.leaseTtl !== undefined && (!Number.isSafeInteger(p.leaseTtl) || p.leaseTtl < 1))
    return `bad lease TTL ${p.leaseTtl}`;
  for (const t of [p.notBefore, p.notAfter])
    if (t !== undefined && Number.isNaN(Date.parse(t))) return `bad time ${t}`;
  return undefined;
}
