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

/** A passphrase file holds the passphrase on its first line; the newline is not part of it. */
function firstLine(bytes: Buffer): Buffer {
  const end = bytes.indexOf(0x0a);
  const line = end < 0 ? bytes : bytes.subarray(0, end);
  return line.length > 0 && line[line.length - 1] === 0x0d ? line.subarray(0, -1) : line;
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
    child.on("error", () => reject(new UserError("--extpass: cannot run the program", EXIT.usage)));
    child.on("close", (code) => {
      if (code !== 0)
        return reject(new UserError(`--extpass program exited with status ${code}`, EXIT.wrongKey));
      resolve(firstLine(Buffer.concat(chunks)));
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
  const chars: number[] = [];
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      input.on("data", (data: Buffer) => {
        for (const byte of data) {
          if (byte === 0x0d || byte === 0x0a) return resolve(Buffer.from(chars));
          if (byte === 0x03) return reject(new UserError("interrupted", EXIT.interrupted));
          if (byte === 0x7f || byte === 0x08) {
            // Erase one character: UTF-8 continuation bytes, then the lead byte.
            while (chars.length > 0 && ((chars[chars.length - 1] ?? 0) & 0xc0) === 0x80)
              chars.pop();
            chars.pop();
          } else chars.push(byte);
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
    chars.fill(0);
  }
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return firstLine(Buffer.concat(chunks));
}

function toSecret(kind: "passphrase" | "recovery", bytes: Buffer): Secret {
  if (kind === "recovery") {
    try {
      return { kind, bytes: parseRecoveryKey(bytes.toString("utf8")) };
    } catch (err) {
      if (isFormatError(err)) throw new UserError(err.message, EXIT.wrongKey);
      throw err;
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
      throw new UserError(
        `${source.keyfile}: key file must hold at least ${MIN_KEYFILE_BYTES} bytes`,
        EXIT.usage,
      );
    }
    return { kind: "keyfile", bytes };
  }
  if (source.passfile)
    return toSecret(kind, firstLine(await readSecretFile(source.passfile, "passphrase file")));
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
  const second = await promptHidden("Repeat passphrase: ");
  if (!first.equals(second)) throw new UserError("passphrases do not match", EXIT.usage);
  second.fill(0);
  return toSecret("passphrase", first);
}
