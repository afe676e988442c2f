import type { Logger } from "pino";

/**
 * The lease of a mount whose key came from a trustee (docs/trustee.md §8.6):
 * the mount renews it before it ends, through the key agent, and stops when
 * the trustee refuses a renewal (revoked device, closed window, removed
 * policy) or the lease runs out because the trustee cannot be reached. The
 * renewal itself is injected, so the timing rules are tested on their own.
 */

export interface LeaseTerms {
  /** The lease's end, RFC 3339. */
  readonly expiresAt: string;
}

export type RenewOutcome =
  | { readonly ok: true; readonly expiresAt: string }
  | { readonly ok: false; readonly refused: boolean; readonly reason: string };

export interface LeaseKeeperOptions {
  readonly initial: LeaseTerms;
  renew(): Promise<RenewOutcome>;
  /** Called once, when the mount must stop; `why` is for the log. */
  stop(why: string): void;
  readonly log: Logger;
  /** Wait between attempts while the trustee is unreachable (ms). */
  readonly retryMs?: number;
}

/** Renew when this share of the time left has passed (half: a lease survives one missed attempt). */
const RENEW_AT = 0.5;
/** Never sooner than this after the last attempt, so a short lease does not spin. */
const MIN_WAIT_MS = 200;

export class LeaseKeeper {
  private renewTimer: NodeJS.Timeout | undefined;
  private deadline: NodeJS.Timeout | undefined;
  private expiresAt: number;
  private stopped = false;

  constructor(private readonly options: LeaseKeeperOptions) {
    this.expiresAt = Date.parse(options.initial.expiresAt);
  }

  start(): void {
    this.extendTo(this.expiresAt);
  }

  /** The mount ended for another reason: no more renewals. */
  dispose(): void {
    this.stopped = true;
    clearTimeout(this.renewTimer);
    clearTimeout(this.deadline);
  }

  /** The lease now ends at `at`: its own deadline (an attempt in flight does not delay it), and the next renewal. */
  private extendTo(at: number): void {
    this.expiresAt = at;
    clearTimeout(this.deadline);
    const left = at - Date.now();
    if (left <= 0) return this.end("the lease ran out before it could be renewed");
    this.deadline = setTimeout(
      () => this.end("the lease ran out: the trustee was not reached"),
      left,
    );
    this.schedule(Math.max(MIN_WAIT_MS, left * RENEW_AT));
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.renewTimer);
    this.renewTimer = setTimeout(() => void this.attempt(), ms);
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    const outcome = await this.options
      .renew()
      .catch((err: Error): RenewOutcome => ({ ok: false, refused: false, reason: err.message }));
    if (this.stopped) return;
    if (outcome.ok) {
      this.options.log.info({ lease_expires_at: outcome.expiresAt }, "lease renewed");
      return this.extendTo(Date.parse(outcome.expiresAt));
    }
    if (outcome.refused) return this.end(`the trustee refused the lease: ${outcome.reason}`);
    this.options.log.warn(
      { reason: outcome.reason, lease_expires_at: new Date(this.expiresAt).toISOString() },
      "lease renewal failed; retrying until the lease ends",
    );
    this.schedule(this.options.retryMs ?? 2000);
  }

  private end(why: string): void {
    if (this.stopped) return;
    this.dispose();
    this.options.log.warn({ why }, "lease ended: unmounting");
    this.options.stop(why);
  }
}
