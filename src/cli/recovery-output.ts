import { constants } from "node:fs";
import { open, unlink, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { fsyncDir } from "../atomic.js";
import { EXIT, UserError } from "../errors.js";

/**
 * Where a new recovery key goes: a terminal, or a file named with
 * --recovery-key-file, never a pipe, a redirected file or a log (a key
 * captured by `cryptmount init ... | tee log`, a CI log or a journal would
 * outlive everything else). Settled before anything is unlocked or written,
 * so a refusal changes nothing.
 */
export interface RecoveryOutput {
  /** Hands over the key: printed with `intro` on the terminal, or written to the file (fsynced). */
  deliver(key: string, intro: string): Promise<void>;
  /** The command failed before it had a key: removes the (still empty) file it created. */
  abandon(): Promise<void>;
}

/**
 * `file`: the --recovery-key-file argument, created now (O_EXCL, O_NOFOLLOW,
 * mode 0600) so an existing file is refused up front. Without it, standard
 * output must be a terminal; `alternative` names the other way out for the
 * usage error ("--no-recovery" for init).
 */
export async function recoveryOutput(
  command: string,
  file: string | undefined,
  alternative?: string,
): Promise<RecoveryOutput> {
  if (file === undefined) {
    if (!process.stdout.isTTY) {
      throw new UserError(
        `${command}: the new recovery key is printed only to a terminal; standard output is not one: ` +
          `use --recovery-key-file FILE${alternative ? ` or ${alternative}` : ""}`,
        EXIT.usage,
      );
    }
    return {
      deliver: async (key, intro) => {
        process.stdout.write(`\n${intro}\n\n    ${key}\n\n`);
      },
      abandon: async () => undefined,
    };
  }
  let handle: FileHandle;
  try {
    handle = await open(
      file,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o600,
    );
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(
      `${file}: cannot create the recovery key file (${code === "EEXIST" ? "it exists already" : code})`,
      EXIT.usage,
    );
  }
  let open_ = true;
  const close = async () => {
    if (!open_) return;
    open_ = false;
    await handle.close();
  };
  return {
    deliver: async (key) => {
      // One line: usable as is with --recovery --passfile FILE.
      const bytes = Buffer.from(`${key}\n`, "utf8");
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } finally {
        bytes.fill(0);
        await close();
      }
      await fsyncDir(dirname(file));
      process.stdout.write(
        `\nRecovery key written to ${file} (mode 0600); move it off this machine and keep it safe.\n`,
      );
    },
    abandon: async () => {
      if (!open_) return;
      await close();
      await unlink(file).catch(() => undefined);
    },
  };
}
