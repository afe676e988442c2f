// Races inside the filesystem, provoked deterministically: every lower call
// is delayed by a random few milliseconds (as on a network lower, or with
// --async-metadata), so requests interleave at every await.

import { constants } from "node:fs";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Keyring } from "../../src/crypto/keys.js";
import { ContentGeometry } from "../../src/format/content.js";
import { FileKind } from "../../src/format/header.js";
import { openObject } from "../../src/format/object.js";
import { CryptFs } from "../../src/fs/crypt-fs.js";
import { FsError } from "../../src/fs/errors.js";
import { directLowerOps, type LowerOps } from "../../src/fs/lower/ops.js";
import type { Place } from "../../src/fs/types.js";
import { prng } from "../helpers/volume-tools.js";
import { openLowerFile } from "../helpers/lower-files.js";

const B = 4096;
const log = pino({ level: "silent" });
const keyring = () =>
  new Keyring(Buffer.alloc(16, 1), 1, new Map([[1, Buffer.alloc(32, 2)]]), Buffer.alloc(32, 3));

/** The real lower calls, each one held back by 0-2 ms of timer time. */
function jittered(seed: number): LowerOps {
  const rand = prng(seed);
  const delay = () => new Promise((r) => setTimeout(r, Math.floor(rand() * 3)));
  return new Proxy(directLowerOps, {
    get(target, key: keyof LowerOps) {
      const real = target[key] as (...args: unknown[]) => Promise<unknown>;
      return async (...args: unknown[]) => {
        await delay();
        return real.apply(target, args);
      };
    },
  });
}

let lower: string;
beforeEach(async () => {
  lower = await mkdtemp(join(tmpdir(), "cm-races-"));
});
afterEach(async () => {
  await rm(lower, { recursive: true, force: true });
});

const O_WRONLY_TRUNC = constants.O_WRONLY | constants.O_TRUNC;

describe("open and close racing on one file", () => {
  it("a writer opening while the last reader closes never writes under a closed file's key", async () => {
    const ring = keyring();
    const fs = await CryptFs.open(lower, ring, B, log, jittered(7));
    const place: Place = { parent: fs.root, name: "f" };
    let fh = await fs.create(place, 0o644, constants.O_WRONLY);
    await fs.write(fh, Buffer.from("first"), 0);
    await fs.release(fh);
    for (let round = 0; round < 40; round++) {
      const content = Buffer.from(`round ${round} `.repeat(round + 1));
      const reader = await fs.open(place, constants.O_RDONLY);
      // The reader's last close and a truncating open race: the writer must get a live file.
      const [, writer] = await Promise.all([fs.release(reader), fs.open(place, O_WRONLY_TRUNC)]);
      await fs.write(writer, content, 0);
      await fs.release(writer);
      // A fresh open, and a reader below the filesystem, both see exactly what was written.
      fh = await fs.open(place, constants.O_RDONLY);
      expect((await fs.read(fh, 1 << 16, 0)).equals(content)).toBe(true);
      await fs.release(fh);
      const [entry] = (await readdir(lower)).filter((n) => !n.startsWith("cryptmount"));
      const file = await openLowerFile(join(lower, entry!), ring, new ContentGeometry(B), log);
      expect((await file.read(0, 1 << 16)).equals(content)).toBe(true);
      await file.close();
    }
    await fs.destroy();
  });

  it("many handles opened and closed at once share one file and leave it consistent", async () => {
    const fs = await CryptFs.open(lower, keyring(), B, log, jittered(11));
    const place: Place = { parent: fs.root, name: "shared" };
    await fs.release(await fs.create(place, 0o644, constants.O_WRONLY));
    const rand = prng(3);
    const work = Array.from({ length: 60 }, async (_, i) => {
      const flags = rand() < 0.5 ? constants.O_RDONLY : constants.O_RDWR;
      const fh = await fs.open(place, flags);
      if (flags === constants.O_RDWR) await fs.write(fh, Buffer.alloc(B, i % 251), 0);
      await fs.read(fh, B, 0);
      await fs.release(fh);
    });
    await Promise.all(work);
    const fh = await fs.open(place, constants.O_RDONLY);
    const data = await fs.read(fh, 2 * B, 0);
    expect(data.length).toBe(B);
    expect(data.every((b) => b === data[0])).toBe(true);
    await fs.release(fh);
    await fs.destroy();
  });
});

describe("opening a file while it is being created", () => {
  it("an open or truncate of a name being created waits for its header instead of failing with EIO", async () => {
    const fs = await CryptFs.open(lower, keyring(), B, log, jittered(5));
    const failures: string[] = [];
    /** Retries while the name does not exist yet; any other error is a failure. */
    const untilThere = async (what: string, attempt: () => Promise<void>): Promise<void> => {
      for (;;) {
        try {
          return await attempt();
        } catch (err) {
          if (err instanceof FsError && err.code === "ENOENT") continue;
          failures.push(`${what}: ${(err as Error).message}`);
          return;
        }
      }
    };
    for (let round = 0; round < 30; round++) {
      const place: Place = { parent: fs.root, name: `new-${round}` };
      const openers = Array.from({ length: 6 }, (_, i) =>
        untilThere(`round ${round} opener ${i}`, async () => {
          if (i === 5) return fs.truncate(place, 0);
          const fh = await fs.open(place, i % 2 ? constants.O_RDONLY : constants.O_RDWR);
          expect((await fs.read(fh, B, 0)).length).toBe(0);
          await fs.release(fh);
        }),
      );
      const creator = fs.create(place, 0o644, constants.O_WRONLY).then((fh) => fs.release(fh));
      await Promise.all([creator, ...openers]);
    }
    expect(failures).toEqual([]);
    await fs.destroy();
  });
});

describe("unmount with requests in flight", () => {
  it("destroy waits for sealing operations; later ones are refused; nothing is sealed under wiped keys", async () => {
    const ring = keyring();
    const fs = await CryptFs.open(lower, ring, B, log, jittered(5));
    const inFlight = Array.from({ length: 20 }, (_, i) =>
      fs
        .symlink(`target-${i}`, { parent: fs.root, name: `link-${i}` })
        .then(() => "done" as const)
        .catch((err: unknown) => {
          expect(err).toBeInstanceOf(FsError);
          expect((err as FsError).errno).toBe("ENOTCONN");
          return "refused" as const;
        }),
    );
    await new Promise((r) => setTimeout(r, 1));
    await fs.destroy();
    // Whatever started before destroy has finished by now: the owner may wipe.
    const reference = keyring();
    ring.wipe();
    const outcomes = await Promise.all(inFlight);
    await expect(fs.getattr({ dir: fs.root })).rejects.toMatchObject({ errno: "ENOTCONN" });
    const links = (await readdir(lower)).filter((n) => !n.startsWith("cryptmount"));
    expect(links.length).toBe(outcomes.filter((o) => o === "done").length);
    for (const entry of links) {
      // Version 3: each symlink is an object, sealed under its own file key (§13).
      const bytes = await readFile(join(lower, entry));
      const value = openObject(reference, bytes, B);
      expect(value.kind === FileKind.Symlink && value.target).toMatch(/^target-\d+$/);
    }
  });

  it("a file closed at unmount refuses further writes instead of sealing with a zeroed key", async () => {
    const fs = await CryptFs.open(lower, keyring(), B, log, directLowerOps);
    const fh = await fs.create({ parent: fs.root, name: "late" }, 0o644, constants.O_WRONLY);
    await fs.destroy();
    await expect(fs.write(fh, Buffer.from("x"), 0)).rejects.toBeInstanceOf(FsError);
  });
});
