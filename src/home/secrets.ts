/**
 * Secrets handed over on standard input, each ended by a NUL (the PAM
 * module's format: C strings cannot hold a NUL, passwords never do). Every
 * chunk read is wiped once copied; the caller wipes what it gets.
 */
export async function readNulSecrets(
  count: number,
  input: NodeJS.ReadableStream = process.stdin,
): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of input) chunks.push(chunk as Buffer);
  const all = Buffer.concat(chunks);
  for (const c of chunks) c.fill(0);
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < count; i++) {
    const end = all.indexOf(0, start);
    if (end < 0) break;
    const secret = Buffer.alloc(end - start);
    all.copy(secret, 0, start, end);
    out.push(secret);
    start = end + 1;
  }
  all.fill(0);
  return out;
}

/** The secrets as the PAM module sends them, for handing on to a child. */
export function nulJoined(secrets: readonly Buffer[]): Buffer {
  const out = Buffer.alloc(secrets.reduce((n, s) => n + s.length + 1, 0));
  let offset = 0;
  for (const s of secrets) {
    offset += s.copy(out, offset);
    out[offset++] = 0;
  }
  return out;
}

export function wipeAll(secrets: readonly Buffer[]): void {
  for (const s of secrets) s.fill(0);
}
