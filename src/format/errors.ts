/**
 * Every way the format can refuse input. Codes are stable: tests, fsck
 * reports and logs use them; messages never contain key material.
 */
export type FormatErrorCode =
  | "BAD_MAGIC"
  | "UNKNOWN_VERSION"
  | "UNKNOWN_FLAGS"
  | "SHORT_HEADER"
  | "HEADER_AUTH"
  | "UNKNOWN_EPOCH"
  | "BLOCK_SIZE_MISMATCH"
  | "BAD_LENGTH"
  | "BLOCK_AUTH"
  | "TRUNCATED"
  | "EXTENDED"
  | "NAME_AUTH"
  | "NAME_ENCODING"
  | "NAME_INVALID"
  | "NAME_TOO_LONG"
  | "LONG_NAME_MISMATCH"
  | "SYMLINK_AUTH"
  | "OBJECT_AUTH"
  | "OBJECT_INVALID"
  | "FILE_TOO_BIG"
  | "CONFIG_INVALID"
  | "CONFIG_AUTH"
  | "UNKNOWN_FEATURE"
  | "WEAK_KDF"
  | "WRONG_KEY"
  | "RECOVERY_KEY_INVALID"
  | "CHECK_RECORD_INVALID";

export class FormatError extends Error {
  constructor(
    readonly code: FormatErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "FormatError";
  }
}

export function isFormatError(err: unknown, code?: FormatErrorCode): err is FormatError {
  return err instanceof FormatError && (code === undefined || err.code === code);
}
