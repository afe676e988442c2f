import { FsError } from "./errors.js";

/**
 * Counts the operations in flight so that unmount can wait for them: keys
 * are wiped only after the last one has finished, and nothing starts once
 * closing has begun (ENOTCONN, as for a connection that is gone).
 */
export class Gate {
  private active = 0;
  private closing = false;
  private drained: (() => void) | undefined;

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.closing) throw new FsError("ENOTCONN");
    this.active++;
    try {
      return await work();
    } finally {
      if (--this.active === 0) this.drained?.();
    }
  }

  /** Resolves once nothing is in flight; refuses new work from now on. */
  close(): Promise<void> {
    this.closing = true;
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => (this.drained = resolve));
  }
}
