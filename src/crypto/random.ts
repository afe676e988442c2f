import { randomFillSync } from "node:crypto";

/**
 * Random bytes in small pieces (nonces, IDs) from a refilled pool: one
 * randomFillSync per 64 KiB instead of one per block halves the per-block
 * cost on the write path (see docs/performance.md).
 */
export class RandomPool {
  private pool = Buffer.alloc(0);
  private used = 0;

  constructor(private readonly poolSize = 64 * 1024) {}

  /** Copies `length` fresh random bytes into `target` at `offset`. */
  fill(target: Buffer, offset: number, length: number): void {
    if (this.used + length > this.pool.length) {
      this.pool = randomFillSync(Buffer.allocUnsafe(Math.max(this.poolSize, length)));
      this.used = 0;
    }
    this.pool.copy(target, offset, this.used, this.used + length);
    // Zero what we handed out so a pool dump never reveals past nonces/IDs.
    this.pool.fill(0, this.used, this.used + length);
    this.used += length;
  }

  bytes(length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    this.fill(out, 0, length);
    return out;
  }
}

export const randomPool = new RandomPool();
