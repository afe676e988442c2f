// Opens lower files by path for unit tests, the way the filesystem does it:
// through a handle on the parent directory (src/fs/lower/ops.ts).

import { constants } from "node:fs";
import { basename, dirname } from "node:path";
import type { Logger } from "pino";
import type { Keyring } from "../../src/crypto/keys.js";
import type { ContentGeometry } from "../../src/format/content.js";
import { directLowerOps, type LowerOps } from "../../src/fs/lower/ops.js";
import { OpenFile, openLower } from "../../src/fs/open-file.js";

const io = directLowerOps;

async function inParent<T>(path: string, work: (dir: number, name: string) => Promise<T>) {
  const dir = await io.openRoot(dirname(path));
  try {
    return await work(dir, basename(path));
  } finally {
    await io.close(dir);
  }
}

/** Opens an existing lower file and verifies its header. */
export function openLowerFile(
  path: string,
  keyring: Keyring,
  geometry: ContentGeometry,
  log: Logger,
  writable = false,
): Promise<OpenFile> {
  return inParent(path, async (dir, name) =>
    OpenFile.open(await openLower(io, dir, name, writable), keyring, geometry, path, log, io),
  );
}

/** Creates a new lower file with its header, as create(2) through the mount does. */
export function createLowerFile(
  path: string,
  keyring: Keyring,
  geometry: ContentGeometry,
  log: Logger,
  ops: LowerOps = io,
): Promise<OpenFile> {
  return inParent(path, async (dir, name) => {
    const { fd } = await io.openFile(
      dir,
      name,
      constants.O_CREAT | constants.O_EXCL | constants.O_RDWR,
      0o600,
    );
    return OpenFile.initialize(fd, keyring, geometry, path, log, ops);
  });
}
