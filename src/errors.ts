/**
 * Errors a user can cause or fix, each with its own exit code
 * (docs/cryptmount.1.md, "EXIT STATUS"). Messages are one line, name paths,
 * and never contain secrets.
 *
 * A leaf module (no imports): keys/, mount/, volume/ and cli/ all use it, so
 * none of them imports another layer just for its errors.
 */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  wrongKey: 3,
  notAVolume: 4,
  mountPoint: 5,
  alreadyMounted: 6,
  problemsFound: 7,
  io: 8,
  /** The trustee answered with a refusal (docs/trustee.md §8). */
  trusteeRefused: 9,
  /** The trustee could not be reached, or is not the pinned one. */
  trusteeUnreachable: 10,
  /** The lower directory cannot hold what the format needs (src/volume/lower-probe.ts). */
  lowerUnsuitable: 11,
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.failure,
  ) {
    super(message);
    this.name = "UserError";
  }
}
