import { constants } from "node:os";
import { isFormatError } from "../format/errors.js";

/**
 * Errors of the filesystem operations, as errno names. The binding adapter
 * turns them into whatever its library expects (negative numbers for
 * fuse-native); operations never deal in numbers.
 */
export type ErrnoName = keyof typeof constants.errno;

export class FsError extends Error {
  constructor(
    readonly errno: ErrnoName,
    message?: string,
  ) {
    super(message ?? errno);
    this.name = "FsError";
  }
}

/** Maps anything thrown inside an operation to an errno name. */
export function toErrno(err: unknown): ErrnoName {
  if (err instanceof FsError) return err.errno;
  if (isFormatError(err)) {
    if (err.code === "NAME_TOO_LONG") return "ENAMETOOLONG";
    if (err.code === "NAME_INVALID") return "EINVAL";
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
