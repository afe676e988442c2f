import { constants } from "node:os";
import { isFormatError } from "../format/errors.js";

/**
 * Errors of the filesystem operations, as errno names. The binding adapter
 * turns them into whatever its library expects (negative numbers for
 * the kernel protocol); operations never deal in numbers.
 */
export type ErrnoName = keyof typeof constants.errno;

/**
 * An expected failure with its errno. No stack trace: ENOENT on a lookup is
 * ordinary traffic, and capturing a stack costs more than the lookup.
 */
export class FsError extends Error {
  readonly errno: ErrnoName;
  constructor(errno: ErrnoName, message?: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message ?? errno);
    Error.stackTraceLimit = limit;
    this.errno = errno;
    this.name = "FsError";
  }

  /** Like a node:fs error, so callers that test `code` see the same. */
  get code(): string {
    return this.errno;
  }
}

/** Maps anything thrown inside an operation to an errno name. */
export function toErrno(err: unknown): ErrnoName {
  if (err instanceof FsError) return err.errno;
  if (isFormatError(err)) {
    if (err.code === "NAME_TOO_LONG") return "ENAMETOOLONG";
    if (err.code === "NAME_INVALID") return "EINVAL";
    if (err.code === "FILE_TOO_BIG") return "EFBIG";
    return "EIO";
  }
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code && code in constants.errno) return code as ErrnoName;
  return "EIO";
}

export function errnoNumber(name: ErrnoName): number {
  return constants.errno[name];
}

export function errnoName(code: number): ErrnoName {
  for (const [name, value] of Object.entries(constants.errno))
    if (value === code) return name as ErrnoName;
  return "EIO";
}
