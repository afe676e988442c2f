import { constants } from "node:fs";
import { mkdir, open, readFile, unlink } from "node:fs/promises";
import { writeFileAtomic } from "../atomic.js";
import { secureNative } from "../mount/hardening.js";
import { EXIT, UserError } from "../errors.js";
import { SESSION_DIR, sessionFiles } from "./paths.js";

/**
 * The per-user session counter: a number in /run/cryptmount-home/USER.sessions,
 * read and written only under an exclusive flock of USER.lock, so two logins
 * (or a login and a logout) at once never both mount or both miss the last
 * unmount. /run is emptied at boot, and so are the counts.
 */
export interface SessionCount {
  value: number;
}

export async function withSessionLock<T>(
  user: string,
  work: (count: SessionCount) => Promise<T>,
): Promise<T> {
  const lockExclusive = secureNative().lockExclusive;
  if (!lockExclusive)
    throw new UserError(
      "the hardening addon is out of date (no lockExclusive); run: node scripts/build-native.mjs",
      EXIT.failure,
    );
  await mkdir(SESSION_DIR, { recursive: true, mode: 0o700 });
  const files = sessionFiles(user);
  const lock = await open(
    files.lock,
    constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    lockExclusive(lock.fd);
    const text = await readFile(files.count, "utf8").catch(() => "0");
    const parsed = Number.parseInt(text.trim(), 10);
    const count: SessionCount = { value: Number.isInteger(parsed) && parsed > 0 ? parsed : 0 };
    const before = count.value;
    const result = await work(count);
    if (count.value !== before) {
      if (count.value > 0) await writeFileAtomic(files.count, `${count.value}\n`, 0o600);
      else await unlink(files.count).catch(() => undefined);
    }
    return result;
  } finally {
    await lock.close(); // releases the flock
  }
}

/** The count without the lock, for `home status`. */
export async function peekSessions(user: string): Promise<number> {
  const text = await readFile(sessionFiles(user).count, "utf8").catch(() => "0");
  const n = Number.parseInt(text.trim(), 10);
  return Number.isInteger(n) && n > 0 ? n : 0;
}
