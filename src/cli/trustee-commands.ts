import { Command } from "commander";
import { readFile } from "node:fs/promises";
import { EXIT, UserError } from "../errors.js";
import { readNewPassphrase, readSecret } from "../keys/secret-input.js";
import { hardenProcess } from "../mount/hardening.js";
import { defaultSocketPath, startAgent } from "../agent/agent.js";
import { agentControl, agentStatus } from "../agent/client.js";
import {
  createDevice,
  defaultDeviceDir,
  deviceExists,
  deviceKeysProtected,
  loadDevice,
  readProfile,
  setTrustee,
} from "../agent/device.js";
import { deviceStatus, enroll, selfRevoke } from "../agent/trustee-client.js";
import {
  approveDevice,
  createInvitation,
  deviceSas,
  removeGrant,
  removePolicy,
  revokeDevice,
  setGrant,
  setPolicy,
  verifyAudit,
} from "../trustee/admin.js";
import { DEFAULT_MAX_VOLUMES, type PolicyRules } from "../trustee/grants.js";
import { initTrusteeDir, openTrusteeHome, readAdminKey } from "../trustee/home.js";
import { parseCidr, parseRate, parseWindow, type TimeWindow } from "../trustee/policy.js";
import { startTrusteeServer } from "../trustee/server.js";
import { collect, loggerFor, positiveInt, type CommonOptions } from "./options.js";

/**
 * `cryptmount trustee …` (run on the trustee host, against its directory),
 * `cryptmount device …` (on a device) and `cryptmount agent …`
 * (docs/trustee.md, docs/cryptmount.1.md).
 */

type Act = <A extends unknown[]>(
  command: (...args: A) => Promise<number>,
) => (...args: A) => Promise<void>;
type Decorate = (command: Command) => Command;

const DEFAULT_TRUSTEE_DIR = process.env.CRYPTMOUNT_TRUSTEE_DIR || "/var/lib/cryptmount-trustee";

function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || port > 65535)
    throw new UserError(`--listen: HOST:PORT expected, got ${text}`, EXIT.usage);
  return { host: m[1] ?? m[2]!, port };
}

function parseDuration(text: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (!m) throw new UserError(`not a duration: ${text} (e.g. 900, 15m, 2h, 7d)`, EXIT.usage);
  return (
    Number(m[1]) * { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as "" | "s" | "m" | "h" | "d"]
  );
}

const out = (line: string) => process.stdout.write(line + "\n");

/** The release rules `trustee policy` and `trustee grant` share (docs/trustee.md §8.2). */
interface RuleOptions {
  dir: string;
  window: string[];
  cidr: string[];
  rate?: string;
  notBefore?: string;
  notAfter?: string;
  agentTtl?: string;
  leaseTtl?: string;
}

function ruleOptions(c: Command): Command {
  return c
    .option(
      "--window <spec>",
      'time window, e.g. "mon-fri 07:00-20:00 Europe/Berlin" (repeatable)',
      collect,
      [],
    )
    .option(
      "--cidr <range>",
      "allowed source address range, IPv4 or IPv6 (repeatable)",
      collect,
      [],
    )
    .option("--rate <n/seconds>", "at most N releases per device in SECONDS, e.g. 10/3600")
    .option("--not-before <date>", "no release before this date")
    .option("--not-after <date>", "no release from this date on")
    .option(
      "--agent-ttl <duration>",
      "how long a key agent may keep a released key (0: not at all, so a revocation stops the next mount)",
    )
    .option(
      "--lease-ttl <duration>",
      "mounts hold a lease this long and renew it; a refused renewal (revocation) or a lease run out unmounts",
    );
}

function rulesFrom(opts: RuleOptions): PolicyRules {
  const windows: TimeWindow[] = opts.window.map((w) => {
    const parsed = parseWindow(w);
    if (!parsed) throw new UserError(`--window: cannot parse "${w}"`, EXIT.usage);
    return parsed;
  });
  for (const c of opts.cidr)
    if (!parseCidr(c)) throw new UserError(`--cidr: not an address range: ${c}`, EXIT.usage);
  const rate = opts.rate === undefined ? undefined : parseRate(opts.rate);
  if (opts.rate !== undefined && !rate)
    throw new UserError(`--rate: N/SECONDS expected, got ${opts.rate}`, EXIT.usage);
  const date = (flag: string, text: string) => {
    const t = Date.parse(text);
    if (Number.isNaN(t)) throw new UserError(`${flag}: not a date: ${text}`, EXIT.usage);
    return new Date(t).toISOString();
  };
  return {
    ...(windows.length ? { windows } : {}),
    ...(opts.cidr.length ? { sourceCidrs: opts.cidr } : {}),
    ...(rate ? { rate } : {}),
    ...(opts.notBefore ? { notBefore: date("--not-before", opts.notBefore) } : {}),
    ...(opts.notAfter ? { notAfter: date("--not-after", opts.notAfter) } : {}),
    ...(opts.agentTtl !== undefined ? { agentTtl: parseDuration(opts.agentTtl) } : {}),
    ...(opts.leaseTtl !== undefined ? { leaseTtl: parseDuration(opts.leaseTtl) } : {}),
  };
}

async function withHome<T>(
  dir: string,
  fn: (home: Awaited<ReturnType<typeof openTrusteeHome>>) => Promise<T>,
): Promise<T> {
  const home = await openTrusteeHome(dir);
  try {
    return await fn(home);
  } finally {
    await home.store.close();
  }
}

async function devicePassphrase(
  dir: string,
  opts: { passfile?: string },
): Promise<Buffer | undefined> {
  if (!(await deviceExists(dir)))
    throw new UserError(
      `${dir}: no device here (cryptmount device enroll creates one)`,
      EXIT.notAVolume,
    );
  if (!(await deviceKeysProtected(dir))) return undefined;
  return (
    await readSecret(opts.passfile ? { passfile: opts.passfile } : {}, "Device key passphrase: ")
  ).bytes;
}

export function registerTrusteeCommands(program: Command, act: Act, logOptions: Decorate): void {
  const trustee = program
    .command("trustee")
    .description("run and administer a key trustee (remote mount-key server)");
  const dirOption = (c: Command) =>
    c.option("-d, --dir <dir>", "the trustee directory", DEFAULT_TRUSTEE_DIR);
  // Whatever these commands create (databases, WAL files, keys, logs) is for this user only.
  const privateFiles = () => void process.umask(0o077);
  trustee.hook("preAction", privateFiles);

  trustee
    .command("init")
    .description("create a trustee directory: identity key, certificate, admin key, database")
    .argument("<dir>")
    .option("--url <url>", "the https URL devices will use (default from --listen)")
    .option("--listen <host:port>", "address to listen on", "127.0.0.1:8443")
    .action(
      act(async (dir: string, opts: { url?: string; listen: string }) => {
        const listen = parseListen(opts.listen);
        const config = await initTrusteeDir(dir, {
          ...listen,
          ...(opts.url ? { url: opts.url } : {}),
        });
        out(`Created trustee ${config.trusteeId} in ${dir}`);
        out(`URL ${config.url}, TLS pin ${config.tlsPin}`);
        out(
          `Next: cryptmount trustee serve --dir ${dir}; cryptmount trustee invite --dir ${dir} --name DEVICE`,
        );
        return EXIT.ok;
      }),
    );

  logOptions(
    dirOption(
      trustee
        .command("serve")
        .description("serve devices over HTTPS (TLS 1.3, mutual authentication) until SIGTERM")
        .option("--listen <host:port>", "override the configured address"),
    ),
  ).action(
    act(async (opts: CommonOptions & { dir: string; listen?: string }) => {
      const log = loggerFor({ ...opts, verbose: opts.verbose ?? true }, true);
      try {
        hardenProcess();
      } catch (err) {
        log.warn({ err: (err as Error).message }, "process hardening unavailable");
      }
      const home = await openTrusteeHome(opts.dir);
      const listen = opts.listen ? parseListen(opts.listen) : home.config.listen;
      const server = await startTrusteeServer(home, { ...listen, logger: log });
      process.stdout.write(`listening on ${server.host}:${server.port}\n`);
      await new Promise<void>((resolve) => {
        process.once("SIGTERM", resolve);
        process.once("SIGINT", resolve);
      });
      await server.close();
      await home.store.close();
      return EXIT.ok;
    }),
  );

  dirOption(
    trustee
      .command("invite")
      .description(
        "issue a single-use invitation for one device (printed once; stored only as a hash)",
      )
      .requiredOption("--name <name>", "the device's name")
      .option("--ttl <duration>", "validity (e.g. 15m, 2h)", "15m"),
  ).action(
    act(async (opts: { dir: string; name: string; ttl: string }) =>
      withHome(opts.dir, async (home) => {
        const { invitation, expiresAt } = await createInvitation(
          home,
          opts.name,
          parseDuration(opts.ttl),
        );
        process.stderr.write(
          `Invitation for ${opts.name}, valid until ${expiresAt}; give it to the device over a trusted channel:\n`,
        );
        out(invitation);
        return EXIT.ok;
      }),
    ),
  );

  dirOption(
    trustee
      .command("devices")
      .description("list enrolled devices with their state and verification code")
      .option("--json", "machine-readable output"),
  ).action(
    act(async (opts: { dir: string; json?: boolean }) =>
      withHome(opts.dir, async (home) => {
        const list = (await home.store.listDevices()).map((d) => ({
          id: d.id,
          name: d.name,
          state: d.state,
          code: deviceSas(home, d),
          created: d.createdAt,
          approved: d.approvedAt,
          revoked: d.revokedAt,
          reason: d.revokeReason,
        }));
        if (opts.json) out(JSON.stringify(list, null, 2));
        else for (const d of list) out(`${d.id}  ${d.state.padEnd(8)} ${d.code}  ${d.name}`);
        return EXIT.ok;
      }),
    ),
  );

  dirOption(
    trustee
      .command("approve")
      .description(
        "approve a pending device after comparing its verification code (signs with the admin key)",
      )
      .argument("<device-id>")
      .requiredOption("--code <code>", "the verification code the device showed")
      .option("--not-after <date>", "refuse the device after this date (RFC 3339)")
      .option(
        "--create-volumes",
        `also let it create volumes itself (trustee grant with no extra rules, up to ${DEFAULT_MAX_VOLUMES})`,
      )
      .option("--admin-key <file>", "the admin key, if kept outside the trustee directory"),
  ).action(
    act(
      async (
        id: string,
        opts: {
          dir: string;
          code: string;
          notAfter?: string;
          adminKey?: string;
          createVolumes?: boolean;
        },
      ) =>
        withHome(opts.dir, async (home) => {
          const d = await approveDevice(home, await readAdminKey(opts.dir, opts.adminKey), id, {
            sas: opts.code,
            ...(opts.notAfter ? { notAfter: opts.notAfter } : {}),
          });
          out(`Approved ${d.id} (${d.name})`);
          if (opts.createVolumes) {
            await setGrant(home, { deviceId: d.id, maxVolumes: DEFAULT_MAX_VOLUMES, rules: {} });
            out(`It may create up to ${DEFAULT_MAX_VOLUMES} volume(s)`);
          }
          return EXIT.ok;
        }),
    ),
  );

  dirOption(
    trustee
      .command("revoke")
      .description("revoke a device: refused at once, its deposits deleted")
      .argument("<device-id>")
      .option("--reason <text>", "why (audited)", "revoked by admin"),
  ).action(
    act(async (id: string, opts: { dir: string; reason: string }) =>
      withHome(opts.dir, async (home) => {
        if (!(await revokeDevice(home, id, opts.reason, "admin")))
          throw new UserError(`no device ${id}, or already revoked`, EXIT.usage);
        out(`Revoked ${id}`);
        return EXIT.ok;
      }),
    ),
  );

  dirOption(
    ruleOptions(
      trustee
        .command("policy")
        .description("set a volume's release policy (replaces the previous one; default deny)")
        .argument("<volume-id>")
        .option(
          "--member <device-id>",
          "a device allowed to hold and fetch the key (repeatable)",
          collect,
          [],
        ),
    )
      .option("--show", "print the current policy instead")
      .option("--remove", "delete the policy: every release of the volume is refused"),
  ).action(
    act(
      async (
        volumeId: string,
        opts: RuleOptions & { member: string[]; show?: boolean; remove?: boolean },
      ) =>
        withHome(opts.dir, async (home) => {
          if (opts.show) {
            out(JSON.stringify((await home.store.getPolicy(volumeId)) ?? null, null, 2));
            return EXIT.ok;
          }
          if (opts.remove) {
            if (!(await removePolicy(home, volumeId)))
              throw new UserError(`no policy for ${volumeId}`, EXIT.usage);
            out(`Removed the policy for ${volumeId}`);
            return EXIT.ok;
          }
          if (opts.member.length === 0)
            throw new UserError("--member: at least one device", EXIT.usage);
          const p = await setPolicy(home, {
            volumeId,
            members: opts.member,
            ...rulesFrom(opts),
          });
          out(`Policy version ${p.version} for ${volumeId}: ${p.members.length} member(s)`);
          return EXIT.ok;
        }),
    ),
  );

  dirOption(
    ruleOptions(
      trustee
        .command("grant")
        .description(
          "let a device create volumes itself (init --trustee without --trustee-volume); each gets a policy with the device as its member and these rules",
        )
        .argument("<device-id>")
        .option("--create-volumes", "grant (or replace the grant)")
        .option(
          "--max-volumes <n>",
          `at most N volumes from this device (default ${DEFAULT_MAX_VOLUMES})`,
          positiveInt("--max-volumes"),
        ),
    )
      .option("--show", "print the device's grant")
      .option("--remove", "withdraw the grant (volumes made under it keep their policies)"),
  ).action(
    act(
      async (
        deviceId: string,
        opts: RuleOptions & {
          createVolumes?: boolean;
          maxVolumes?: number;
          show?: boolean;
          remove?: boolean;
        },
      ) =>
        withHome(opts.dir, async (home) => {
          if (opts.show) {
            out(JSON.stringify((await home.store.getGrant(deviceId)) ?? null, null, 2));
            return EXIT.ok;
          }
          if (opts.remove) {
            if (!(await removeGrant(home, deviceId)))
              throw new UserError(`device ${deviceId} has no grant`, EXIT.usage);
            out(`Withdrew the grant of ${deviceId}`);
            return EXIT.ok;
          }
          if (!opts.createVolumes)
            throw new UserError("say what to do: --create-volumes, --show or --remove", EXIT.usage);
          const g = await setGrant(home, {
            deviceId,
            maxVolumes: opts.maxVolumes ?? DEFAULT_MAX_VOLUMES,
            rules: rulesFrom(opts),
          });
          out(`Device ${deviceId} may create up to ${g.maxVolumes} volume(s)`);
          return EXIT.ok;
        }),
    ),
  );

  const auditCmd = trustee.command("audit").description("the audit log");
  dirOption(
    auditCmd
      .command("verify")
      .description(
        "check every record's hash, signature and chain; exit 7 at the first bad record",
      ),
  ).action(
    act(async (opts: { dir: string }) =>
      withHome(opts.dir, async (home) => {
        const v = await verifyAudit(home);
        if (v.problem) {
          process.stderr.write(
            `cryptmount: audit log: ${v.problem.kind} at record ${v.problem.seq}: ${v.problem.message}\n`,
          );
          return EXIT.problemsFound;
        }
        out(`audit log OK: ${v.records} records, head ${v.head?.seq ?? 0} ${v.head?.hash ?? ""}`);
        return EXIT.ok;
      }),
    ),
  );
  dirOption(auditCmd.command("show").description("print the records as JSON lines")).action(
    act(async (opts: { dir: string }) =>
      withHome(opts.dir, async (home) => {
        for (const r of await home.store.readAudit()) out(r.text);
        return EXIT.ok;
      }),
    ),
  );

  // --- device ------------------------------------------------------------------
  const device = program.command("device").description("this machine's identity at a trustee");
  device.hook("preAction", privateFiles);
  const devDir = (c: Command) =>
    c.option("--device-dir <dir>", "the device directory", defaultDeviceDir());

  devDir(
    device
      .command("enroll")
      .description(
        "create this device's keys (once) and enroll with an invitation read from a file or standard input",
      )
      .option("--invitation-file <file>", "read the invitation from FILE (default: standard input)")
      .option("--name <name>", "this device's name (default: the invitation's)")
      .option("--protect", "seal the device keys with a passphrase (asked, or --passfile)")
      .option("--passfile <file>", "the passphrase for the device keys"),
  ).action(
    act(
      async (opts: {
        deviceDir: string;
        invitationFile?: string;
        name?: string;
        protect?: boolean;
        passfile?: string;
      }) => {
        // The invitation is a secret until used: never from argv.
        const text = opts.invitationFile
          ? await readFile(opts.invitationFile, "utf8")
          : await readStdinText();
        let passphrase: Buffer | undefined;
        if (!(await deviceExists(opts.deviceDir))) {
          if (opts.protect || opts.passfile)
            passphrase = (await readNewPassphrase(opts.passfile ? { passfile: opts.passfile } : {}))
              .bytes;
          await createDevice(
            opts.deviceDir,
            opts.name ??
              (await import("node:os"))
                .hostname()
                .slice(0, 64)
                .replace(/[^\w .@-]/g, "_"),
            passphrase,
          );
        } else passphrase = await devicePassphrase(opts.deviceDir, opts);
        try {
          const keys = await loadDevice(opts.deviceDir, passphrase);
          const { result, invitation } = await enroll(keys, text);
          await setTrustee(opts.deviceDir, invitation, result.sas);
          out(`Enrolled as ${result.deviceId} (${result.state}).`);
          out(`Verification code: ${result.sas}`);
          out(
            `The admin approves with: cryptmount trustee approve ${result.deviceId} --code ${result.sas}`,
          );
          return EXIT.ok;
        } finally {
          passphrase?.fill(0);
        }
      },
    ),
  );

  devDir(
    device
      .command("show")
      .description("this device's ID, verification code and trustee (local, no network)"),
  ).action(
    act(async (opts: { deviceDir: string }) => {
      const p = await readProfile(opts.deviceDir);
      out(
        JSON.stringify(
          {
            device_id: p.deviceId,
            name: p.name,
            code: p.sas ?? null,
            trustee: p.trustee ? { url: p.trustee.url, id: p.trustee.tid } : null,
          },
          null,
          2,
        ),
      );
      return EXIT.ok;
    }),
  );

  for (const [name, description] of [
    ["status", "ask the trustee for this device's state"],
    ["revoke", "revoke this device at the trustee (it can never be used again)"],
  ] as const) {
    devDir(
      device
        .command(name)
        .description(description)
        .option("--passfile <file>", "the passphrase for the device keys"),
    ).action(
      act(async (opts: { deviceDir: string; passfile?: string }) => {
        const pass = await devicePassphrase(opts.deviceDir, opts);
        const keys = await loadDevice(opts.deviceDir, pass);
        pass?.fill(0);
        if (name === "status") out(JSON.stringify(await deviceStatus(keys), null, 2));
        else {
          await selfRevoke(keys);
          out(`Revoked ${keys.profile.deviceId}`);
        }
        return EXIT.ok;
      }),
    );
  }

  // --- agent -------------------------------------------------------------------
  const agent = program
    .command("agent")
    .description("the key agent: holds released mount keys in memory for this user");
  agent.hook("preAction", privateFiles);
  const sock = (c: Command) =>
    c.option("--socket <path>", "the agent's socket", defaultSocketPath());
  logOptions(
    devDir(
      sock(
        agent
          .command("run", { isDefault: true })
          .description("run the agent in the foreground")
          .option(
            "--idle-ttl <seconds>",
            "drop a key unused this long",
            positiveInt("--idle-ttl"),
            600,
          )
          .option(
            "--max-ttl <seconds>",
            "drop a key this long after release",
            positiveInt("--max-ttl"),
            7200,
          )
          .option("--passfile <file>", "the passphrase for the device keys"),
      ),
    ),
  ).action(
    act(
      async (
        opts: CommonOptions & {
          socket: string;
          deviceDir: string;
          idleTtl: number;
          maxTtl: number;
          passfile?: string;
        },
      ) => {
        const log = loggerFor(opts, true);
        try {
          hardenProcess();
        } catch (err) {
          log.warn({ err: (err as Error).message }, "process hardening unavailable");
        }
        const pass = await devicePassphrase(opts.deviceDir, opts);
        const keys = await loadDevice(opts.deviceDir, pass);
        pass?.fill(0);
        const running = await startAgent({
          socketPath: opts.socket,
          device: keys,
          logger: log,
          idleTtl: opts.idleTtl,
          maxTtl: opts.maxTtl,
        });
        process.stdout.write(`agent listening on ${running.socketPath}\n`);
        await new Promise<void>((resolve) => {
          process.once("SIGTERM", resolve);
          process.once("SIGINT", resolve);
        });
        await running.close();
        return EXIT.ok;
      },
    ),
  );
  for (const op of ["lock", "unlock"] as const)
    sock(
      agent
        .command(op)
        .description(
          op === "lock"
            ? "drop every key and refuse releases until unlock"
            : "accept releases again",
        ),
    ).action(
      act(async (opts: { socket: string }) => {
        await agentControl(op, opts.socket);
        return EXIT.ok;
      }),
    );
  sock(
    agent.command("forget").description("drop one volume's key, or all").argument("[volume-id]"),
  ).action(
    act(async (volume: string | undefined, opts: { socket: string }) => {
      await agentControl("forget", opts.socket, volume);
      return EXIT.ok;
    }),
  );
  sock(agent.command("status").description("what the agent holds (never a key)")).action(
    act(async (opts: { socket: string }) => {
      out(JSON.stringify(await agentStatus(opts.socket), null, 2));
      return EXIT.ok;
    }),
  );
}

async function readStdinText(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write("Paste the invitation, then press Enter: ");
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) {
    chunks.push(c as Buffer);
    if (process.stdin.isTTY && Buffer.concat(chunks).includes(0x0a)) break;
  }
  return Buffer.concat(chunks).toString("utf8").trim();
}
