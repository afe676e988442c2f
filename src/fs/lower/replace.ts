import { randomPool } from "../../crypto/random.js";
import type { Fd, LowerOps } from "./ops.js";

/**
 * Puts `content` at `name` in `dir` so that a crash leaves the old entry or
 * the new one: a temporary file `<name>.tmp-<12 hex digits>` written and
 * fsynced, one rename over the name (which replaces a FIFO, socket, device
 * or symlink itself, never what a symlink points to), then the directory
 * synced.
 */
export async function replaceFileAt(
  io: LowerOps,
  dir: Fd,
  name: string,
  content: Buffer,
  mode: number,
): Promise<void> {
  const temp = `${name}.tmp-${randomPool.bytes(6).toString("hex")}`;
  await io.createFile(dir, temp, content, mode, { exclusive: true, sync: true });
  try {
    await io.rename(dir, temp, dir, name, 0);
  } catch (err) {
    await io.unlink(dir, temp).catch(() => undefined);
    throw err;
  }
  await io.fsyncDir(dir);
}
