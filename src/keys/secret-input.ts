import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { openSync, closeSync } from "node:fs";
import { ReadStream, WriteStream } from "node:tty";
import { parseRecoveryKey } from "../format/recovery.js";
import { isFormatError } from "../format/errors.js";
import { EXIT, UserError } from "../errors.js";
import { MIN_KEYFILE_BYTES, type Secret } from "./kek.js";

/** Where a command gets its secret from (the options every keyed command takes). */
export interface SecretSource {
  readonly passfile?: string;
  readonly keyfile?: string;
  readonly extpass?: string;
  readonly recovery?: boolean;
}

/*
 * Every Buffer that held secret bytes on the way in (file contents, pipe and
 * terminal chunks, their concatenation) is zeroed once the secret has been
 * copied out of it; the secret itself is a Buffer of its own, which the
 * caller wipes. Residual: what Node and the kernel buffered before we saw it
 * (stream internals, pipe buffers) is out of reach, and a recovery key is
 * parsed from a (immutable) string.
 */

/** Zeroes every buffer given. */
function wipeAll(buffers: Iterable<Uint8Array>): void {
  for (const b of buffers) b.fill(0);
}

/**
 * A passphrase file holds the passphrase on its first line; the newline is
 * not part of it. Returns a copy in a buffer of its own (never a pool slice)
 * and wipes `bytes`.
 */
function takeFirstLine(bytes: Buffer): Buffer {
  const end = bytes.indexOf(0x0a);
  let length = end < 0 ? bytes.length : end;
  if (length > 0 && bytes[length - 1] === 0x0d) length--;
  const line = Buffer.alloc(length);
  bytes.copy(line, 0, 0, length);
  bytes.fill(0);
  return line;
}

/** The chunks joined into one buffer of its own; the chunks are wiped. */
function takeConcat(chunks: Buffer[]): Buffer {
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const joined = Buffer.alloc(total);
  let offset = 0;
  for (const c of chunks) offset += c.copy(joined, offset);
  wipeAll(chunks);
  chunks.length = 0;
  return joined;
}

async function readSecretFile(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(
      `${path}: cannot read ${what} (${code === "ENOENT" ? "no such file" : code})`,
      EXIT.usage,
    );
  }
}

/** Runs an askpass-style program with no arguments but the prompt and reads its first output line. */
function runExtpass(command: string, prompt: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", command, "cryptmount-extpass", prompt], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const chunks: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => chunks.push(c));
    child.on("error", () => {
      wipeAll(chunks);
      reject(new UserError("--extpass: cannot run the program", EXIT.usage));
    });
    child.on("close", (code) => {
      const output = takeConcat(chunks);
      if (code !== 0) {
        output.fill(0);
        return reject(new UserError(`--extpass program exited with status ${code}`, EXIT.wrongKey));
      }
      resolve(takeFirstLine(output));
    });
  });
}

/** Reads a line from the controlling terminal without echo. */
export async function promptHidden(prompt: string): Promise<Buffer> {
  let fd: number;
  try {
    fd = openSync("/dev/tty", "r+");
  } catch {
    throw new UserError(
      "no terminal to ask for a passphrase: use --passfile, --keyfile or --extpass",
      EXIT.usage,
    );
  }
  const input = new ReadStream(fd);
  const output = new WriteStream(fd);
  output.write(prompt);
  input.setRawMode(true);
  // Typed bytes collect in a Buffer (grown by copying, the old one wiped), never in a JS array or string.
  let typed = Buffer.alloc(256);
  let length = 0;
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      input.on("data", (data: Buffer) => {
        try {
          for (const byte of data) {
            if (byte === 0x0d || byte === 0x0a) {
              const line = Buffer.alloc(length);
              typed.copy(line, 0, 0, length);
              return resolve(line);
            }
            if (byte === 0x03) return reject(new UserError("interrupted", EXIT.interrupted));
            if (byte === 0x7f || byte === 0x08) {
              // Erase one character: UTF-8 continuation bytes, then the lead byte.
              while (length > 0 && ((typed[length - 1] ?? 0) & 0xc0) === 0x80) typed[--length] = 0;
              if (length > 0) typed[--length] = 0;
              continue;
            }
            if (length === typed.length) {
              const bigger = Buffer.alloc(typed.length * 2);
              typed.copy(bigger);
              typed.fill(0);
              typed = bigger;
            }
            typed[length++] = byte;
          }
        } finally {
          data.fill(0);
        }
      });
    });
  } finally {
    input.setRawMode(false);
    output.write("\n");
    input.destroy();
    output.destroy();
    try {
      closeSync(fd);
    } catch {
      /* already closed by the streams */
    }
    typed.fill(0);
  }
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  } catch (err) {
    wipeAll(chunks);
    throw err;
  }
  return takeFirstLine(takeConcat(chunks));
}

function toSecret(kind: "passphrase" | "recovery", bytes: Buffer): Secret {
  if (kind === "recovery") {
    try {
      return { kind, bytes: parseRecoveryKey(bytes.toString("utf8")) };
    } catch (err) {
      if (isFormatError(err)) throw new UserError(err.message, EXIT.wrongKey);
      throw err;
    } finally {
      bytes.fill(0);
    }
  }
  if (bytes.length === 0) throw new UserError("empty passphrase", EXIT.usage);
  return { kind, bytes };
}

/**
 * The secret to unlock with: --keyfile, --passfile, --extpass, a terminal
 * prompt, or standard input when it is not a terminal, in that order.
 */
export async function readSecret(source: SecretSource, prompt = "Passphrase: "): Promise<Secret> {
  const kind = source.recovery ? "recovery" : "passphrase";
  if (source.keyfile) {
    const bytes = await readSecretFile(source.keyfile, "key file");
    if (bytes.length < MIN_KEYFILE_BYTES) {
      bytes.fill(0);
      throw new UserError(
        `${source.keyfile}: key file must hold at least ${MIN_KEYFILE_BYTES} bytes`,
        EXIT.usage,
      );
    }
    return { kind: "keyfile", bytes };
  }
  if (source.passfile)
    return toSecret(kind, takeFirstLine(await readSecretFile(source.passfile, "passphrase file")));
  if (source.extpass) return toSecret(kind, await runExtpass(source.extpass, prompt));
  if (process.stdin.isTTY)
    return toSecret(kind, await promptHidden(source.recovery ? "Recovery key: " : prompt));
  return toSecret(kind, await readStdin());
}

/** A new passphrase: asked twice on a terminal, read once from a file or stdin. */
export async function readNewPassphrase(source: {
  passfile?: string;
  extpass?: string;
}): Promise<Secret> {
  if (source.passfile || source.extpass || !process.stdin.isTTY) {
    return readSecret(source, "New passphrase: ");
  }
  const first = await promptHidden("New passphrase: ");
  let second: Buffer | undefined;
  try {
    second = await promptHidden("Repeat passphrase: ");
    if (!first.equals(second)) throw new UserError("passphrases do not match", EXIT.usage);
    return toSecret("passphrase", first);
  } catch (err) {
    first.fill(0);
    throw err;
  } finally {
    second?.fill(0);
  }
}
