import type { Command, Option } from "commander";

/**
 * A device ID is a JWK thumbprint (RFC 7638), 43 base64url characters, so
 * one in 32 begins with "-" (or "--"). No option of ours looks like that.
 */
const DASHED_ID = /^-[A-Za-z0-9_-]{42}$/;

/** The options `command` accepts: its own and those of the commands above it. */
function optionsOf(command: Command): Option[] {
  const all: Option[] = [];
  for (let c: Command | null = command; c; c = c.parent) all.push(...c.options);
  return all;
}

function optionNamed(options: readonly Option[], arg: string): Option | undefined {
  const flag = arg.startsWith("--") ? arg.split("=", 1)[0] : arg;
  return options.find((o) => o.long === flag || o.short === flag);
}

/**
 * Commander takes every argument that begins with "-" for an option, so
 * `trustee approve -vy0E… --code …` would fail with "unknown option". An
 * operand shaped like a device ID is no option: when one is present, every
 * operand moves behind "--", in its order, and the options stay in front.
 * Anything else is returned unchanged.
 */
export function protectDashedOperands(program: Command, args: readonly string[]): string[] {
  let command = program;
  let i = 0;
  for (; i < args.length; i++) {
    const sub = command.commands.find(
      (c) => c.name() === args[i] || c.aliases().includes(args[i]!),
    );
    if (!sub) break;
    command = sub;
  }
  const path = args.slice(0, i);
  const options = optionsOf(command);
  const flags: string[] = [];
  const operands: string[] = [];
  let dashed = false;
  for (; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") return [...args]; // already explicit
    const option = arg.startsWith("-") ? optionNamed(options, arg) : undefined;
    if (option) {
      flags.push(arg);
      const inline = arg.startsWith("--") && arg.includes("=");
      const next = args[i + 1];
      const takesNext = option.required || (option.optional && !next?.startsWith("-"));
      if (!inline && takesNext && next !== undefined) flags.push(args[++i]!);
    } else if (arg.startsWith("-") && !DASHED_ID.test(arg)) {
      flags.push(arg); // unknown: commander reports it
    } else {
      dashed ||= arg.startsWith("-");
      operands.push(arg);
    }
  }
  return dashed ? [...path, ...flags, "--", ...operands] : [...args];
}
