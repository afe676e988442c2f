/** Progress of long work (fsck, rekey); the CLI supplies a terminal bar. */
export interface Progress {
  start(total: number): void;
  tick(amount?: number): void;
  stop(): void;
}

export const noProgress: Progress = { start() {}, tick() {}, stop() {} };
