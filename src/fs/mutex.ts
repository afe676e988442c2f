/**
 * A readers-writer lock over async work, first come first served: reads of
 * one file overlap (readahead keeps several in flight), a write or truncate
 * runs alone.
 */
export class RwLock {
  private readers = 0;
  private writing = false;
  private readonly waiting: { write: boolean; grant: () => void }[] = [];

  read<T>(work: () => Promise<T>): Promise<T> {
    return this.run(false, work);
  }

  write<T>(work: () => Promise<T>): Promise<T> {
    return this.run(true, work);
  }

  private async run<T>(write: boolean, work: () => Promise<T>): Promise<T> {
    if (this.waiting.length > 0 || !this.free(write)) {
      await new Promise<void>((grant) => this.waiting.push({ write, grant }));
    } else {
      this.take(write);
    }
    try {
      return await work();
    } finally {
      if (write) this.writing = false;
      else this.readers--;
      this.drain();
    }
  }

  private free(write: boolean): boolean {
    return !this.writing && (!write || this.readers === 0);
  }

  private take(write: boolean): void {
    if (write) this.writing = true;
    else this.readers++;
  }

  private drain(): void {
    while (this.waiting.length > 0 && this.free(this.waiting[0]!.write)) {
      const next = this.waiting.shift()!;
      this.take(next.write);
      next.grant();
    }
  }
}
