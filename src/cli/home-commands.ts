import type { Command } from "commander";
import { homeConfirm, homeRecover, homeRemove, homeSetup, homeStatus } from "../home/admin.js";
import { pamHelper } from "../home/pam-helper.js";
import { argon2FromOptions, positiveInt } from "./options.js";
import { recoveryOutput, type RecoveryOutput } from "./recovery-output.js";

type Act = <A extends unknown[]>(
  command: (...args: A) => Promise<number>,
) => (...args: A) => Promise<void>;

interface SetupFlags {
  private?: boolean;
  migrate?: boolean;
  pam?: boolean;
  passfile?: string;
  recoveryKeyFile?: string;
  kdfMemory?: number;
  kdfIterations?: number;
  kdfParallelism?: number;
}

async function setupCommand(user: string, flags: SetupFlags): Promise<number> {
  const kdf = argon2FromOptions(flags);
  let output: RecoveryOutput | undefined;
  try {
    return await homeSetup(
      user,
      {
        kdf,
        ...(flags.private ? { private: true } : {}),
        ...(flags.migrate ? { migrate: true } : {}),
        ...(flags.pam === false ? { pam: false } : {}),
        ...(flags.passfile ? { passfile: flags.passfile } : {}),
      },
      // Settled before the password is asked for; not needed when the home exists already.
      async () => (output = await recoveryOutput("home setup", flags.recoveryKeyFile)),
    );
  } finally {
    await output?.abandon();
  }
}

/** `cryptmount home ...`: encrypted home directories unlocked at login (docs/home.md). */
export function registerHomeCommands(program: Command, act: Act): void {
  const home = program
    .command("home")
    .description("encrypted home directories, unlocked at login by pam_cryptmount (docs/home.md)");

  home
    .command("setup")
    .description(
      "create USER's encrypted home and login slot, print a recovery key, add the PAM lines",
    )
    .argument("<user>")
    .option("--private", "encrypt ~/Private only, not the whole home")
    .option(
      "--migrate",
      "move the existing files in (verified copy; the original kept as a backup)",
    )
    .option("--no-pam", "do not install the module or edit /etc/pam.d")
    .option("--passfile <file>", "read USER's login password from FILE instead of asking")
    .option(
      "--recovery-key-file <file>",
      "write the recovery key to FILE (new, mode 0600) instead of the terminal",
    )
    .option(
      "--kdf-memory <KiB>",
      "Argon2id memory in KiB (default 262144)",
      positiveInt("--kdf-memory"),
    )
    .option("--kdf-iterations <n>", "Argon2id passes (default 3)", positiveInt("--kdf-iterations"))
    .option("--kdf-parallelism <n>", "Argon2id lanes (default 1)", positiveInt("--kdf-parallelism"))
    .addHelpText(
      "after",
      "\nExamples:\n  cryptmount home setup alice\n  cryptmount home setup --migrate alice\n  cryptmount home setup --private bob",
    )
    .action(act((user: string, flags: SetupFlags) => setupCommand(user, flags)));

  home
    .command("status")
    .description("show USER's encrypted home: volume, mount, sessions, login slot, PAM lines")
    .argument("<user>")
    .option("--json", "machine-readable output")
    .action(act((user: string, opts: { json?: boolean }) => homeStatus(user, opts)));

  home
    .command("recover")
    .description(
      "with the recovery key, make the login slot open with USER's current password (after root's passwd USER)",
    )
    .argument("<user>")
    .option("--recovery-file <file>", "read the recovery key from FILE instead of asking")
    .option("--passfile <file>", "read USER's current login password from FILE instead of asking")
    .action(
      act((user: string, opts: { recoveryFile?: string; passfile?: string }) =>
        homeRecover(user, opts),
      ),
    );

  home
    .command("remove")
    .description(
      "copy USER's encrypted home back out (verified), delete the volume, take the PAM lines out when none is left",
    )
    .argument("<user>")
    .option(
      "--passfile <file>",
      "read the login password (or, with --recovery, the recovery key) from FILE",
    )
    .option("--recovery", "unlock with the recovery key")
    .action(
      act((user: string, opts: { passfile?: string; recovery?: boolean }) =>
        homeRemove(user, opts),
      ),
    );

  home
    .command("confirm")
    .description("the user checked the migrated home: delete the migration backup")
    .argument("<user>")
    .action(act((user: string) => homeConfirm(user)));

  home
    .command("pam-helper", { hidden: true })
    .argument("<action>")
    .argument("<user>")
    .option("--mount <where>", "~ or ~/Private")
    .option("--debug")
    .action(
      act((action: string, user: string, opts: { mount?: string; debug?: boolean }) =>
        pamHelper(action, user, opts),
      ),
    );
}
