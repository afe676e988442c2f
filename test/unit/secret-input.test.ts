// Reading secrets: the first line of a passphrase file or of an --extpass
// program's output, in a buffer of its own (wiping it wipes the secret), and
// every buffer the file's bytes passed through is zeroed afterwards.

import { afterAll, beforeEach, describe, expect, it, vi } from "vitest";

const reads: Buffer[] = [];
vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs/promises")>();
  return {
    ...actual,
    readFile: async (...args: Parameters<typeof actual.readFile>) => {
      const bytes = (await actual.readFile(...args)) as Buffer;
      reads.push(bytes);
      return bytes;
    },
  };
});

const { readSecret } = await import("../../src/keys/secret-input.js");
const { mkdtemp, rm, writeFile } = await import("node:fs/promises");
const { tmpdir } = await import("node:os");
const { join } = await import("node:path");

const dir = await mkdtemp(join(tmpdir(), "cryptmount-secret-input-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

/** The secret owns its memory: not a slice of a larger (pooled or file) buffer. */
function ownsItsMemory(bytes: Buffer): boolean {
  return bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.length;
}

describe("readSecret", () => {
  beforeEach(() => {
    reads.length = 0;
  });

  it("--passfile: the first line without CR LF, copied out; the file's bytes are wiped", async () => {
    const path = join(dir, "pass");
    await writeFile(path, "first line secret\r\nsecond line\n", { mode: 0o600 });
    const secret = await readSecret({ passfile: path });
    expect(secret.kind).toBe("passphrase");
    expect(secret.bytes.toString()).toBe("first line secret");
    expect(ownsItsMemory(secret.bytes)).toBe(true);
    expect(reads).toHaveLength(1);
    expect(reads[0]!.every((b) => b === 0)).toBe(true);
    expect(reads[0]!.length).toBeGreaterThan(0);
  });

  it("--keyfile: the whole file is the secret", async () => {
    const path = join(dir, "key");
    await writeFile(path, Buffer.alloc(40, 7), { mode: 0o600 });
    const secret = await readSecret({ keyfile: path });
    expect(secret).toEqual({ kind: "keyfile", bytes: Buffer.alloc(40, 7) });
  });

  it("a key file that is too short is refused and its bytes are wiped", async () => {
    const path = join(dir, "short");
    await writeFile(path, Buffer.alloc(8, 7), { mode: 0o600 });
    await expect(readSecret({ keyfile: path })).rejects.toThrow(/at least 32 bytes/);
    expect(reads[0]!.every((b) => b === 0)).toBe(true);
  });

  it("--extpass: the first line of the program's output", async () => {
    const secret = await readSecret({ extpass: "printf 'from a program\\nignored'" });
    expect(secret.bytes.toString()).toBe("from a program");
    expect(ownsItsMemory(secret.bytes)).toBe(true);
  });

  it("--recovery with --passfile: parsed, and the text's buffer wiped", async () => {
    const { formatRecoveryKey } = await import("../../src/format/recovery.js");
    const path = join(dir, "recovery");
    await writeFile(path, formatRecoveryKey(Buffer.alloc(32, 5)) + "\n", { mode: 0o600 });
    const secret = await readSecret({ passfile: path, recovery: true });
    expect(secret).toEqual({ kind: "recovery", bytes: Buffer.alloc(32, 5) });
    expect(reads[0]!.every((b) => b === 0)).toBe(true);
  });
});
