import { Command, CommanderError } from "commander";
import { EXIT, UserError } from "../errors.js";
import { infoCommand, initCommand, statusCommand, umountCommand } from "./commands.js";
import { mountCommand, serveCommand } from "./mount-command.js";
import { fsckCommand, passwdCommand, rekeyCommand, upgradeCommand } from "./volume-commands.js";
import { collect, positiveInt } from "./options.js";
import { registerTrusteeCommands } from "./trustee-commands.js";
import { registerHomeCommands } from "./home-commands.js";
import { protectDashedOperands } from "./argv.js";
import { hardenProcess } from "../mount/hardening.js";

const COMMANDS = new Set([
  "init",
  "mount",
  "umount",
  "unmount",
  "info",
  "status",
  "passwd",
  "rekey",
  "fsck",
  "upgrade",
  "trustee",
  "device",
  "agent",
  "home",
  "help",
  "__serve",
]);

function keyOptions(command: Command): Command {
  return command
    .option("--passfile <file>", "read the passphrase from the first line of FILE")
    .option("--keyfile <file>", "unlock with a key file")
    .option("--extpass <command>", "run COMMAND and read the passphrase from its output")
    .option("--recovery", "unlock with the recovery key instead of a passphrase");
}

/** Keyed commands that can unlock a volume's trustee slot through the key agent. */
function trusteeKeyOptions(command: Command): Command {
  return command
    .option(
      "--trustee",
      "use the trustee slot through the key agent even when a key source is given (which is then the fallback)",
    )
    .option("--trustee-socket <path>", "the key agent's socket (default: its default path)");
}

/** Commands that talk to the trustee as this device themselves. */
function deviceOptions(command: Command): Command {
  return command
    .option("--device-dir <dir>", "this device's directory (default: as for cryptmount device)")
    .option("--device-passfile <file>", "the passphrase of the device keys, if they are sealed");
}

function logOptions(command: Command): Command {
  return command
    .option("-v, --verbose", "log what happens")
    .option("--debug", "log in detail")
    .option("--log-file <file>", "append JSON logs to FILE");
}

const KEY_HOLDING_COMMANDS = new Set([
  "init",
  "passwd",
  "rekey",
  "fsck",
  "upgrade",
  "home setup",
  "home recover",
  "home remove",
  "home pam-helper",
]);

/** Commands resolve with their exit code; commander wants void, so it is kept here. */
let exitCode: number = EXIT.ok;
function act<A extends unknown[]>(command: (...args: A) => Promise<number>) {
  return async (...args: A): Promise<void> => {
    exitCode = await command(...args);
  };
}

/** commander's "error: ...\n(Did you mean ...?)" as one "cryptmount: ..." line. */
export function usageLine(message: string): string {
  return `cryptmount: ${message
    .trim()
    .replace(/^error: /, "")
    .replace(/\s*\n\s*/g, " ")}\n`;
}

export function buildProgram(): Command {
  const program = new Command("cryptmount")
    .description("Mount a directory whose files are kept encrypted at rest, file by file.")
    .usage(
      "[command] [options]\n       cryptmount LOWER MOUNTPOINT [options]   (same as: cryptmount mount)",
    )
    .version("0.1.0")
    .exitOverride()
    .showHelpAfterError(false)
    // Usage errors look like every other error: one line, "cryptmount: " first.
    .configureOutput({ outputError: (str, write) => write(usageLine(str)) })
    .addHelpText(
      "after",
      `
Examples:
  cryptmount init /data/lower                 create a volume (asks for a passphrase)
  cryptmount /data/lower /data/clear          unlock and mount it
  cryptmount umount /data/clear               unmount it
  cryptmount status                           list mounted volumes`,
    );

  logOptions(
    deviceOptions(
      program
        .command("init")
        .description("create a new volume in LOWER (an empty or missing directory)")
        .argument("<lower>", "directory that will hold the encrypted files")
        .option("--passfile <file>", "read the new passphrase from FILE instead of asking twice")
        .option("--extpass <command>", "read the new passphrase from COMMAND's output")
        .option(
          "--keyfile <file>",
          "add a key-file slot (with no passphrase unless --passfile/--extpass is given too)",
        )
        .option("--no-recovery", "do not create a recovery key")
        .option("--no-probe", "do not check first that LOWER can hold a volume (docs/lower-s3.md)")
        .option(
          "--trustee <url>",
          "add a trustee key slot: its secret is deposited at this trustee, sealed to the volume's member devices",
        )
        .option(
          "--trustee-volume <name>",
          "with --trustee: the volume's name in a policy the admin made (16 to 64 of A-Z a-z 0-9 _ -); default: the new volume ID, registered under this device's grant",
        )
        .option(
          "--keep-passphrase",
          "with --trustee: keep a passphrase slot beside it (opens the volume without the trustee, bypassing its policy)",
        )
        .option("--trustee-only", "with --trustee: no passphrase or key-file slot")
        .option(
          "--recovery-key-file <file>",
          "write the recovery key to FILE (new, mode 0600) instead of the terminal; needed when standard output is not a terminal",
        )
        .option(
          "--block-size <bytes>",
          "content block size, a power of two from 4096 to 1048576",
          positiveInt("--block-size"),
        )
        .option(
          "--kdf-memory <KiB>",
          "Argon2id memory in KiB (default 262144)",
          positiveInt("--kdf-memory"),
        )
        .option(
          "--kdf-iterations <n>",
          "Argon2id passes (default 3)",
          positiveInt("--kdf-iterations"),
        )
        .option(
          "--kdf-parallelism <n>",
          "Argon2id lanes (default 1)",
          positiveInt("--kdf-parallelism"),
        )
        .addHelpText(
          "after",
          "\nExample:\n  cryptmount init /data/lower\n  cryptmount init --passfile /etc/cryptmount/data.pass /data/lower\n" +
            "  cryptmount init --trustee https://trustee.example:8443 --trustee-only /data/lower",
        ),
    ),
  ).action(act((lower: string, opts) => initCommand(lower, opts)));

  logOptions(
    trusteeKeyOptions(
      keyOptions(
        program
          .command("mount")
          .description("unlock LOWER and mount its cleartext view at MOUNTPOINT")
          .argument("<lower>", "the volume's directory")
          .argument("<mountpoint>", "an empty directory")
          .option("-f, --foreground", "stay in the foreground until unmounted")
          .option(
            "-o, --options <opts>",
            "mount options: ro, allow_other, passfile=F, keyfile=F, trustee, trustee_socket=P, nonempty, dev, suid (repeatable)",
            collect,
          )
          .option("--ro, --read-only", "mount read-only")
          .option(
            "--allow-other",
            "let other users access the mount (needs user_allow_other or root)",
          )
          .option("--nonempty", "allow a non-empty mount point")
          .option(
            "--no-probe",
            "do not check first that LOWER can hold a volume (also -o no_probe)",
          )
          .option(
            "--async-metadata",
            "make lower calls (metadata, reads, writes) through the threadpool even on a local disk (default only for network filesystems)",
          )
          .addHelpText(
            "after",
            "\nExample:\n  cryptmount mount --passfile /etc/cryptmount/data.pass /data/lower /data/clear\n" +
              "  cryptmount /data/lower /data/clear              (a trustee slot: the key agent asks the trustee)",
          ),
      ),
    ),
  ).action(act((lower: string, mountpoint: string, opts) => mountCommand(lower, mountpoint, opts)));

  for (const name of ["umount", "unmount"]) {
    program
      .command(name, { hidden: name === "unmount" })
      .description("unmount a cryptmount volume")
      .argument("<mountpoint>")
      .option("--lazy", "detach even if busy")
      .action(act((mountpoint: string, opts) => umountCommand(mountpoint, opts)));
  }

  program
    .command("info")
    .description("show a volume's format, parameters and key slots (never a secret)")
    .argument("<lower>")
    .option("--json", "machine-readable output")
    .action(act((lower: string, opts) => infoCommand(lower, opts)));

  program
    .command("status")
    .description(
      "list mounted volumes: where, from which lower directory, which key source, since when",
    )
    .option("--json", "machine-readable output")
    .action(act((opts) => statusCommand(opts)));

  logOptions(
    deviceOptions(
      trusteeKeyOptions(
        keyOptions(
          program
            .command("passwd")
            .description(
              "change, add or remove key slots (passphrase, key file, recovery key); data is not touched",
            )
            .argument("<lower>")
            .option("--new-passfile <file>", "read the new passphrase from FILE")
            .option("--new-extpass <command>", "read the new passphrase from COMMAND's output")
            .option("--slot <id>", "the passphrase slot to change", positiveInt("--slot"))
            .option("--add-passphrase", "add a passphrase slot instead of changing one")
            .option("--add-keyfile <file>", "add a key-file slot")
            .option(
              "--add-trustee <url>",
              "add a trustee slot (this device enrolled there and a member of the volume's policy)",
            )
            .option(
              "--trustee-volume <name>",
              "with --add-trustee: the volume's name in a policy the admin made (default: the volume ID, registered under this device's grant if there is no such policy)",
            )
            .option(
              "--update-trustee",
              "deposit the trustee slot's key again, for the policy's current members (after the admin added a device)",
            )
            .option(
              "--new-recovery-key",
              "replace the recovery key (shows the new one once, on the terminal or in --recovery-key-file)",
            )
            .option(
              "--recovery-key-file <file>",
              "with --new-recovery-key: write the new key to FILE (new, mode 0600) instead of the terminal",
            )
            .option(
              "--remove-slot <id>",
              "remove a key slot (never the last one)",
              positiveInt("--remove-slot"),
            )
            .option(
              "--kdf-memory <KiB>",
              "Argon2id memory for the new passphrase",
              positiveInt("--kdf-memory"),
            )
            .option(
              "--kdf-iterations <n>",
              "Argon2id passes for the new passphrase",
              positiveInt("--kdf-iterations"),
            )
            .option(
              "--kdf-parallelism <n>",
              "Argon2id lanes for the new passphrase",
              positiveInt("--kdf-parallelism"),
            )
            .addHelpText(
              "after",
              `
Examples:
  cryptmount passwd /data/lower                                  change the passphrase (asks old, then new twice)
  cryptmount passwd --recovery /data/lower                       forgot it: unlock with the recovery key, set a new one
  cryptmount passwd --passfile old --new-passfile new /data/lower
  cryptmount passwd --add-keyfile /root/data.key /data/lower
  cryptmount passwd --remove-slot 3 /data/lower
  cryptmount passwd --add-trustee https://trustee.example:8443 /data/lower
  cryptmount passwd --update-trustee /data/lower`,
            ),
        ),
      ),
    ),
  ).action(act((lower: string, opts) => passwdCommand(lower, opts)));

  logOptions(
    trusteeKeyOptions(
      keyOptions(
        program
          .command("rekey")
          .description(
            "rotate the mount key: rewrap every file header, no data rewrite; safe to interrupt and rerun",
          )
          .argument("<lower>")
          .option(
            "--revoke-others",
            "also replace the slot key: keep only the slot that unlocked and a new recovery key (cuts off every other secret, even from old config copies)",
          )
          .option(
            "--recovery-key-file <file>",
            "with --revoke-others: write the new recovery key to FILE (new, mode 0600) instead of the terminal",
          )
          .addHelpText(
            "after",
            "\nExample:\n  cryptmount rekey --passfile /etc/cryptmount/data.pass /data/lower",
          ),
      ),
    ),
  ).action(act((lower: string, opts) => rekeyCommand(lower, opts)));

  logOptions(
    trusteeKeyOptions(
      keyOptions(
        program
          .command("fsck")
          .description(
            "verify every header, block, name, directory ID and symlink; exit 7 when problems are found",
          )
          .argument("<lower>")
          .option(
            "--repair",
            "fix what is safe to fix (orphan sidecars, leftover temp files, forged directory IDs); never deletes user data",
          )
          .option("--json", "print a JSON report (and a one-line summary on stderr)")
          .option(
            "--full",
            "read every file, also those the check record lists as unchanged since they were last verified",
          )
          .option(
            "--full-after <days>",
            "check everything when the last full check began more than DAYS days ago",
          )
          .option(
            "--no-record",
            "neither use nor write the check record (cryptmount.fsck in the lower): check everything, write nothing",
          )
          .addHelpText(
            "after",
            "\nA repeat check reads only the files whose lower size, mtime, ctime or inode changed since they\n" +
              "were last verified (the check record); names, directory IDs, sidecars and objects are always checked.\n" +
              "\nExample:\n  cryptmount fsck --passfile /etc/cryptmount/data.pass --json /data/lower",
          ),
      ),
    ),
  ).action(act((lower: string, opts) => fsckCommand(lower, opts)));

  logOptions(
    trusteeKeyOptions(
      keyOptions(
        program
          .command("upgrade")
          .description(
            "upgrade a volume of format version 1 or 2 to version 3 (authenticated directory IDs; symlinks and special files as objects; holes), in place; safe to interrupt and rerun",
          )
          .argument("<lower>")
          .addHelpText(
            "after",
            "\nUnmount the volume everywhere and update cryptmount on every machine that uses it first:\n" +
              "older versions cannot open a version-3 volume.\n\n" +
              "Example:\n  cryptmount upgrade --passfile /etc/cryptmount/data.pass /data/lower",
          ),
      ),
    ),
  ).action(act((lower: string, opts) => upgradeCommand(lower, opts)));

  // Every command that unlocks a volume holds its keys: no core dumps, not
  // dumpable, before a passphrase is read (mount hardens in its own steps).
  program.hook("preAction", (_program, command) => {
    const name = command.parent?.name() === "home" ? `home ${command.name()}` : command.name();
    if (KEY_HOLDING_COMMANDS.has(name)) hardenProcess();
  });

  registerTrusteeCommands(program, act, logOptions);
  registerHomeCommands(program, act);
  program.command("__serve", { hidden: true }).action(act(() => serveCommand()));
  return program;
}

/** mount.fuse and people call "cryptmount LOWER MOUNTPOINT [-o ...]": route that to "mount". */
export function normalizeArgv(args: readonly string[]): string[] {
  const first = args[0];
  if (first !== undefined && !first.startsWith("-") && !COMMANDS.has(first))
    return ["mount", ...args];
  return [...args];
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  exitCode = EXIT.ok;
  try {
    await program.parseAsync(protectDashedOperands(program, normalizeArgv(argv)), {
      from: "user",
    });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (err instanceof UserError) {
      process.stderr.write(`cryptmount: ${err.message}\n`);
      return err.exitCode;
    }
    const debug = argv.includes("--debug");
    process.stderr.write(`cryptmount: internal error: ${(err as Error)?.message ?? String(err)}\n`);
    if (debug && err instanceof Error && err.stack) process.stderr.write(err.stack + "\n");
    return EXIT.failure;
  }
}

const isMain = process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  // Exit explicitly: a server that was unmounted may still hold binding handles.
  const exit = (code: number) => process.stdout.write("", () => process.exit(code));
  main(process.argv.slice(2)).then(exit, () => exit(EXIT.failure));
}
