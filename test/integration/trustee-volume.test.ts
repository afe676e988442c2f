// The volume side of the trustee (docs/trustee.md §12), end to end with real
// processes: a trustee server on loopback, one key agent per device, the
// CLI, and real FUSE mounts. Enroll → approve → init --trustee → mount →
// write/read → unmount; a second device added by depositing again mounts
// too; a revoked device is refused (exit 9, the rule named); a stopped
// trustee is exit 10 while a passphrase slot still mounts; --trustee-only
// leaves no passphrase slot. Then every log (at --debug), argv and
// environment of the processes started is scanned for T, the mount key and
// the invitation tokens.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountKeyFromAgent } from "../../src/agent/client.js";
import { loadConfig, unlockWithSecret } from "../../src/volume/volume.js";
import {
  CLI,
  EXIT,
  Sandbox,
  haveFuse,
  isMounted,
  q,
  run,
  sh,
  waitFor,
  type RunResult,
} from "../helpers/volume.js";

const NAME = "trustee-vol-photos-0001";
const NAME2 = "trustee-vol-papers-0002";
const NAME3 = "trustee-vol-asked-00003";

async function freePort(): Promise<number> {
  return new Promise((ok) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

const encodings = (b: Buffer) => [b.toString("hex"), b.toString("base64"), b.toString("base64url")];

describe.skipIf(!haveFuse)("trustee key slot: init, mount through the agent, refusals", () => {
  let sb: Sandbox;
  let tdir: string;
  let url: string;
  let port: number;
  const started: ChildProcess[] = [];
  let serve: ChildProcess | undefined;
  const agents: Record<string, { proc: ChildProcess; socket: string; dir: string }> = {};
  const tokens: string[] = [];
  /** Every secret the scans look for (T of each volume, their mount keys). */
  const secrets: Buffer[] = [];
  /** argv and environment of every process started, read while it ran. */
  const procTexts: { pid: number; what: string; bytes: Buffer }[] = [];
  async function snapshotProc(pid: number | undefined): Promise<void> {
    if (!pid) return;
    for (const what of ["cmdline", "environ"]) {
      const bytes = await readFile(`/proc/${pid}/${what}`).catch(() => undefined);
      if (bytes) procTexts.push({ pid, what, bytes });
    }
  }
  const logs: string[] = [];
  let lower: string;
  let lower2: string;

  const cli = (args: string[], input?: string): Promise<RunResult> =>
    sb.cli(args, { timeoutMs: 60_000, ...(input !== undefined ? { input } : {}) });
  const cliOk = async (args: string[], input?: string): Promise<string> => {
    const r = await cli(args, input);
    expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };

  /** Starts a long-running CLI command; resolves once it printed its first line. */
  function background(args: string[]): Promise<ChildProcess> {
    return new Promise((ok, fail) => {
      const child = spawn(process.execPath, [CLI, ...args], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, ...sb.env },
      });
      started.push(child);
      let err = "";
      child.stderr!.on("data", (d) => (err += d));
      child.stdout!.once("data", () => ok(child));
      child.once("exit", (code) => fail(new Error(`${args.join(" ")} exited ${code}: ${err}`)));
    });
  }

  async function stop(child: ChildProcess | undefined): Promise<void> {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await snapshotProc(child.pid);
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  }

  async function startServe(): Promise<void> {
    const log = join(sb.dir, `trustee-${logs.length}.log`);
    logs.push(log);
    serve = await background(["trustee", "serve", "--dir", tdir, "--debug", "--log-file", log]);
  }

  /** invite → enroll (invitation on stdin) → approve with the code the device printed. */
  async function enrollDevice(name: string, approveArgs: string[] = []): Promise<string> {
    const dir = join(sb.dir, `device-${name}`);
    const invitation = (
      await cliOk(["trustee", "invite", "--dir", tdir, "--name", name, "--ttl", "10m"])
    ).trim();
    tokens.push(
      JSON.parse(Buffer.from(invitation.split(".")[1]!, "base64url").toString()).token as string,
    );
    const out = await cliOk(
      ["device", "enroll", "--device-dir", dir, "--name", name],
      invitation + "\n",
    );
    const id = /Enrolled as (\S+)/.exec(out)![1]!;
    const code = /Verification code: (\S+)/.exec(out)![1]!;
    await cliOk(["trustee", "approve", id, "--dir", tdir, "--code", code, ...approveArgs]);
    const log = join(sb.dir, `agent-${name}.log`);
    logs.push(log);
    const socket = join(sb.dir, `run-${name}`, "agent.sock");
    const proc = await background([
      "agent",
      "run",
      "--socket",
      socket,
      "--device-dir",
      dir,
      "--debug",
      "--log-file",
      log,
    ]);
    agents[name] = { proc, socket, dir };
    return id;
  }

  /** `cryptmount mount` with the given arguments at a fresh mount point (at --debug, logged). */
  async function mount(
    volume: string,
    args: string[],
  ): Promise<{ r: RunResult; mountpoint: string }> {
    const mountpoint = await sb.mkdir("mnt");
    const log = `${mountpoint}.log`;
    logs.push(log);
    const r = await cli(["mount", "--debug", "--log-file", log, ...args, volume, mountpoint]);
    if (r.code === 0) {
      expect(isMounted(mountpoint)).toBe(true);
      const pid = sb.serverPid(mountpoint);
      expect(pid).toBeDefined();
      await snapshotProc(pid);
    } else expect(isMounted(mountpoint)).toBe(false);
    return { r, mountpoint };
  }

  async function unmount(mountpoint: string): Promise<void> {
    await cliOk(["umount", mountpoint]);
    expect(isMounted(mountpoint)).toBe(false);
  }

  /** init --trustee URL --trustee-only with no volume name: registered under the device's grant. */
  const initRegistered = (device: string, lower: string) =>
    ["init", "--trustee", url, "--trustee-only", "--no-recovery"].concat([
      "--device-dir",
      agents[device]!.dir,
      lower,
    ]);

  /** T (from the agent, as a mount gets it) and the mount key it unlocks, for the scans. */
  async function collectSecrets(volume: string, name: string, socket: string): Promise<void> {
    const { mountKey: t } = await mountKeyFromAgent({ volumeId: name, socketPath: socket });
    const { config } = await loadConfig(volume);
    const unlocked = await unlockWithSecret(volume, config, { kind: "trustee", bytes: t });
    secrets.push(Buffer.from(t), ...[...unlocked.mountKeys.values()].map((k) => Buffer.from(k)));
    unlocked.close();
    t.fill(0);
  }

  let deviceA = "";
  let deviceB = "";

  beforeAll(async () => {
    sb = await Sandbox.create("trustee");
    tdir = join(sb.dir, "trustee");
    port = await freePort();
    url = `https://127.0.0.1:${port}`;
    await cliOk(["trustee", "init", tdir, "--listen", `127.0.0.1:${port}`]);
    await startServe();
    deviceA = await enrollDevice("alpha");
    await cliOk(["trustee", "policy", NAME, "--dir", tdir, "--member", deviceA]);
    await cliOk(["trustee", "policy", NAME2, "--dir", tdir, "--member", deviceA]);
    await cliOk(["trustee", "policy", NAME3, "--dir", tdir, "--member", deviceA]);
  }, 60_000);

  afterAll(async () => {
    await sb?.unmountAll();
    for (const child of started) await stop(child);
    await sb?.cleanup();
  });

  it("init --trustee refuses to guess, and checks membership before creating anything", async () => {
    const target = sb.path("lower");
    const noChoice = await cli([
      "init",
      "--trustee",
      url,
      "--trustee-volume",
      NAME,
      "--device-dir",
      agents.alpha!.dir,
      "--no-recovery",
      target,
    ]);
    expect(noChoice.code).toBe(EXIT.usage);
    expect(noChoice.stderr).toMatch(/--keep-passphrase .* or --trustee-only/);
    const stray = await cli(["init", "--trustee-only", "--no-recovery", target]);
    expect(stray.code).toBe(EXIT.usage);
    expect(stray.stderr).toContain("go with --trustee");
    const notMember = await cli([
      "init",
      "--trustee",
      url,
      "--trustee-volume",
      "no-such-policy-0000",
      "--trustee-only",
      "--device-dir",
      agents.alpha!.dir,
      "--no-recovery",
      target,
    ]);
    expect(notMember.code, notMember.stderr).toBe(EXIT.trusteeRefused);
    expect(notMember.stderr).toContain("no_policy");
    expect(notMember.stderr).toContain(
      `cryptmount trustee policy no-such-policy-0000 --member ${deviceA}`,
    );
    await expect(readdir(target)).rejects.toThrow(); // nothing was created
  });

  it.skipIf(!existsSync("/usr/bin/script"))(
    "init --trustee on a terminal asks whether to keep a passphrase, until answered",
    async () => {
      const target = sb.path("lower");
      const command = [process.execPath, CLI, "init", "--trustee", url, "--trustee-volume", NAME3]
        .concat(["--device-dir", agents.alpha!.dir, "--no-recovery", target])
        .map(q)
        .join(" ");
      // script(1) gives the command a terminal; the answers are typed ahead.
      const r = await run("script", ["-qec", command, "/dev/null"], {
        env: sb.env,
        input: "maybe\nno\n",
        timeoutMs: 60_000,
      });
      expect(r.code, r.stdout).toBe(0);
      expect(r.stdout).toContain("Keep a passphrase slot? [yes/no] Please answer yes or no:");
      const info = JSON.parse(await cliOk(["info", "--json", target])) as {
        slots: { kind: string }[];
      };
      expect(info.slots.map((s) => s.kind)).toEqual(["trustee"]);
    },
  );

  it("init --trustee-only → info shows the slot and no passphrase → mount through the agent → write, read, unmount", async () => {
    lower = sb.path("lower");
    const out = await cliOk([
      "init",
      "--trustee",
      url,
      "--trustee-volume",
      NAME,
      "--trustee-only",
      "--device-dir",
      agents.alpha!.dir,
      "--no-recovery",
      "--debug",
      lower,
    ]);
    expect(out).toContain(`volume ${NAME}, deposited for 1 device(s)`);
    const info = JSON.parse(await cliOk(["info", "--json", lower])) as {
      slots: { kind: string; trustee?: Record<string, unknown> }[];
      trustee: { passphraseSlot: boolean; bypassSlots: number[] };
    };
    expect(info.slots.map((s) => s.kind)).toEqual(["trustee"]);
    expect(info.slots[0]!.trustee).toMatchObject({
      url,
      volume: NAME,
      key_version: 1,
      members: [{ id: deviceA, name: "alpha" }],
    });
    expect(info.trustee).toEqual({ slot: 1, passphraseSlot: false, bypassSlots: [] });
    const text = await cliOk(["info", lower]);
    expect(text).toContain(`url ${url}`);
    expect(text).toContain("trustee only:");
    // The same name cannot be given to a second volume: it would replace this one's secret.
    const reuse = await cli([
      "init",
      "--trustee",
      url,
      "--trustee-volume",
      NAME,
      "--trustee-only",
      "--device-dir",
      agents.alpha!.dir,
      "--no-recovery",
      sb.path("lower"),
    ]);
    expect(reuse.code).toBe(EXIT.usage);
    expect(reuse.stderr).toContain("already holds a key");

    const { r, mountpoint } = await mount(lower, ["-o", `trustee_socket=${agents.alpha!.socket}`]);
    expect(r.code, r.stderr).toBe(0);
    const status = await cliOk(["status"]);
    expect(status).toContain("key=trustee");
    const rw = await sh(
      `echo kept-by-the-trustee > '${mountpoint}/note' && cat '${mountpoint}/note'`,
    );
    expect(rw.stdout).toBe("kept-by-the-trustee\n");
    await unmount(mountpoint);
    await collectSecrets(lower, NAME, agents.alpha!.socket);
  });

  it("a second device, added by depositing again for the new member list, mounts too", async () => {
    deviceB = await enrollDevice("beta");
    // Before the deposit, the new member has nothing to fetch.
    await cliOk([
      "trustee",
      "policy",
      NAME,
      "--dir",
      tdir,
      "--member",
      deviceA,
      "--member",
      deviceB,
    ]);
    const early = await mount(lower, ["-o", `trustee_socket=${agents.beta!.socket}`]);
    expect(early.r.code).toBe(EXIT.trusteeRefused);
    expect(early.r.stderr).toContain("no_deposit");

    const out = await cliOk([
      "passwd",
      "--update-trustee",
      "--device-dir",
      agents.alpha!.dir,
      lower,
    ]);
    expect(out).toContain("for 2 device(s)");
    const info = JSON.parse(await cliOk(["info", "--json", lower])) as {
      slots: { trustee?: { members: { id: string }[] } }[];
    };
    expect(info.slots[0]!.trustee!.members.map((m) => m.id).sort()).toEqual(
      [deviceA, deviceB].sort(),
    );
    const { r, mountpoint } = await mount(lower, [
      "-o",
      `trustee,trustee_socket=${agents.beta!.socket}`,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(await readFile(join(mountpoint, "note"), "utf8")).toBe("kept-by-the-trustee\n");
    await unmount(mountpoint);
  });

  it("a revoked device is refused with exit 9 and the rule's name", async () => {
    await cliOk(["trustee", "revoke", deviceB, "--dir", tdir]);
    // The agent would serve its cached key until its TTL: forget it, as a revocation drill does.
    await cliOk(["agent", "forget", "--socket", agents.beta!.socket]);
    const { r } = await mount(lower, ["--trustee-socket", agents.beta!.socket]);
    expect(r.code).toBe(EXIT.trusteeRefused);
    expect(r.stderr).toContain("device_revoked");
    expect(r.stderr).toContain(NAME);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("no agent: exit 10, saying how to start one", async () => {
    const { r } = await mount(lower, ["--trustee-socket", join(sb.dir, "nothing", "agent.sock")]);
    expect(r.code).toBe(EXIT.trusteeUnreachable);
    expect(r.stderr).toContain("start one with: cryptmount agent");
  });

  it("a trustee-only volume rekeys and fscks through the agent, and still mounts", async () => {
    const socket = ["--trustee-socket", agents.alpha!.socket];
    expect(await cliOk(["rekey", ...socket, lower])).toContain("epoch 1 -> 2");
    expect(await cliOk(["fsck", ...socket, lower])).toContain("clean");
    const { r, mountpoint } = await mount(lower, socket);
    expect(r.code, r.stderr).toBe(0);
    expect(await readFile(join(mountpoint, "note"), "utf8")).toBe("kept-by-the-trustee\n");
    await unmount(mountpoint);
    await collectSecrets(lower, NAME, agents.alpha!.socket); // the new epoch's mount key too
  });

  it("--keep-passphrase: info warns; with the trustee stopped, exit 10, and the passphrase still mounts", async () => {
    lower2 = sb.path("lower");
    await cliOk([
      "init",
      "--trustee",
      url,
      "--trustee-volume",
      NAME2,
      "--keep-passphrase",
      "--passfile",
      sb.passfile,
      "--kdf-memory",
      "65536",
      "--kdf-iterations",
      "3",
      "--device-dir",
      agents.alpha!.dir,
      "--no-recovery",
      lower2,
    ]);
    const info = JSON.parse(await cliOk(["info", "--json", lower2])) as {
      slots: { kind: string }[];
      trustee: { passphraseSlot: boolean };
    };
    expect(info.slots.map((s) => s.kind)).toEqual(["passphrase", "trustee"]);
    expect(info.trustee.passphraseSlot).toBe(true);
    expect(await cliOk(["info", lower2])).toMatch(/warning: .*bypassing its policy/);
    await collectSecrets(lower2, NAME2, agents.alpha!.socket);

    await stop(serve);
    await cliOk(["agent", "forget", "--socket", agents.alpha!.socket]);
    const down = await mount(lower2, ["--trustee-socket", agents.alpha!.socket]);
    expect(down.r.code).toBe(EXIT.trusteeUnreachable);
    expect(down.r.stderr).toContain(`at ${url}`);
    expect(down.r.stderr).toContain("passphrase slot");
    // The passphrase as the fallback of the trustee, and on its own.
    const fallback = await mount(lower2, [
      "-o",
      `trustee,trustee_socket=${agents.alpha!.socket},passfile=${sb.passfile}`,
    ]);
    expect(fallback.r.code, fallback.r.stderr).toBe(0);
    expect(fallback.r.stderr).toContain("using the key given instead");
    await unmount(fallback.mountpoint);
    const plain = await mount(lower2, ["--passfile", sb.passfile]);
    expect(plain.r.code, plain.r.stderr).toBe(0);
    await unmount(plain.mountpoint);
    await startServe();
  });

  it("passwd --remove-slot drops the trustee slot; --add-trustee adds one (named by the volume ID)", async () => {
    const key = ["--passfile", sb.passfile];
    await cliOk(["passwd", ...key, "--remove-slot", "2", lower2]);
    const before = JSON.parse(await cliOk(["info", "--json", lower2])) as {
      volumeId: string;
      slots: { kind: string }[];
    };
    expect(before.slots.map((s) => s.kind)).toEqual(["passphrase"]);
    await cliOk(["trustee", "policy", before.volumeId, "--dir", tdir, "--member", deviceA]);
    const added = await cliOk([
      "passwd",
      ...key,
      "--add-trustee",
      url,
      "--device-dir",
      agents.alpha!.dir,
      lower2,
    ]);
    expect(added).toContain(`volume ${before.volumeId}`);
    expect(added).toMatch(/Warning: slot\(s\) 1 still open the volume without the trustee/);
    const after = JSON.parse(await cliOk(["info", "--json", lower2])) as {
      slots: { kind: string; trustee?: { volume: string } }[];
    };
    expect(after.slots.map((s) => s.kind)).toEqual(["passphrase", "trustee"]);
    expect(after.slots[1]!.trustee!.volume).toBe(before.volumeId);
    const { r, mountpoint } = await mount(lower2, ["--trustee-socket", agents.alpha!.socket]);
    expect(r.code, r.stderr).toBe(0);
    await unmount(mountpoint);
    await collectSecrets(lower2, before.volumeId, agents.alpha!.socket);
  });

  it("init --trustee without a name: refused without a grant; with one the volume registers itself, mounts, and (agent TTL 0) a revocation stops the next mount", async () => {
    const deviceC = await enrollDevice("gamma");
    const lower3 = sb.path("lower");
    const initArgs = initRegistered("gamma", lower3);
    const refused = await cli(initArgs);
    expect(refused.code, refused.stderr).toBe(EXIT.trusteeRefused);
    expect(refused.stderr).toContain(`cryptmount trustee grant ${deviceC} --create-volumes`);
    await expect(readdir(lower3)).rejects.toThrow(); // nothing was created
    await cliOk([
      "trustee",
      "grant",
      deviceC,
      "--dir",
      tdir,
      "--create-volumes",
      "--agent-ttl",
      "0",
    ]);
    const out = await cliOk(initArgs);
    const info = JSON.parse(await cliOk(["info", "--json", lower3])) as {
      volumeId: string;
      slots: { trustee?: { volume: string } }[];
    };
    expect(info.slots[0]!.trustee!.volume).toBe(info.volumeId);
    expect(out).toContain(`volume ${info.volumeId}, deposited for 1 device(s)`);
    const policy = JSON.parse(
      await cliOk(["trustee", "policy", info.volumeId, "--dir", tdir, "--show"]),
    ) as Record<string, unknown>;
    expect(policy).toMatchObject({ members: [deviceC], createdBy: deviceC, agentTtl: 0 });

    const { r, mountpoint } = await mount(lower3, ["--trustee-socket", agents.gamma!.socket]);
    expect(r.code, r.stderr).toBe(0);
    await sh(`echo registered > '${mountpoint}/n'`);
    await unmount(mountpoint);
    const status = JSON.parse(
      await cliOk(["agent", "status", "--socket", agents.gamma!.socket]),
    ) as { entries: unknown[] };
    expect(status.entries).toEqual([]); // agent TTL 0: the agent kept nothing
    await collectSecrets(lower3, info.volumeId, agents.gamma!.socket);
    // No `agent forget` here: with nothing cached, the revocation counts at once.
    await cliOk(["trustee", "revoke", deviceC, "--dir", tdir]);
    const after = await mount(lower3, ["--trustee-socket", agents.gamma!.socket]);
    expect(after.r.code).toBe(EXIT.trusteeRefused);
    expect(after.r.stderr).toContain("device_revoked");
  });

  it("the walkthrough: approve --create-volumes, then init --trustee URL --trustee-only and mount", async () => {
    await enrollDevice("delta", ["--create-volumes"]);
    const lower4 = sb.path("lower");
    await cliOk(initRegistered("delta", lower4));
    const { r, mountpoint } = await mount(lower4, ["--trustee-socket", agents.delta!.socket]);
    expect(r.code, r.stderr).toBe(0);
    const rw = await sh(`echo five-steps > '${mountpoint}/f' && cat '${mountpoint}/f'`);
    expect(rw.stdout).toBe("five-steps\n");
    await unmount(mountpoint);
    const { volumeId } = JSON.parse(await cliOk(["info", "--json", lower4])) as {
      volumeId: string;
    };
    await collectSecrets(lower4, volumeId, agents.delta!.socket);
  });

  it("a lease: renewed, the mount outlives it; with the trustee away the mount ends with the lease; a revocation ends it at the next renewal", async () => {
    const deviceE = await enrollDevice("epsilon");
    await cliOk([
      "trustee",
      "grant",
      deviceE,
      "--dir",
      tdir,
      "--create-volumes",
      "--lease-ttl",
      "4",
    ]);
    const lower5 = sb.path("lower");
    await cliOk(initRegistered("epsilon", lower5));
    const socket = ["--trustee-socket", agents.epsilon!.socket];
    const leased = async () => {
      const { r, mountpoint } = await mount(lower5, socket);
      expect(r.code, r.stderr).toBe(0);
      return { mountpoint, pid: sb.serverPid(mountpoint)! };
    };
    const gone = async (mountpoint: string, pid: number) => {
      await waitFor("the lease to end the mount", async () => !isMounted(mountpoint), 20_000);
      await waitFor("the server to exit", async () => !existsSync(`/proc/${pid}`), 10_000);
    };

    // Renewed: the mount outlives its first lease.
    const first = await leased();
    await sh(`echo leased > '${first.mountpoint}/l'`);
    await new Promise((r) => setTimeout(r, 6000));
    expect(isMounted(first.mountpoint)).toBe(true);
    expect(await readFile(join(first.mountpoint, "l"), "utf8")).toBe("leased\n");
    // The trustee away: renewals fail, and the mount ends with the lease.
    await stop(serve);
    await gone(first.mountpoint, first.pid);
    await startServe();

    // A revocation: the next renewal is refused and the mount ends at once.
    const second = await leased();
    expect(await readFile(join(second.mountpoint, "l"), "utf8")).toBe("leased\n");
    await cliOk(["trustee", "revoke", deviceE, "--dir", tdir]);
    await gone(second.mountpoint, second.pid);
    const log = await readFile(`${second.mountpoint}.log`, "utf8");
    expect(log).toContain("device_revoked");
    expect(log).toContain("lease ended: unmounting");
    const audit = await cliOk(["trustee", "audit", "show", "--dir", tdir]);
    expect(audit).toContain('"event":"lease.renew"');
  });

  it("no T, mount key or invitation token in any log at --debug, argv or environment", async () => {
    expect(secrets.length).toBeGreaterThanOrEqual(4);
    const needles = [...secrets.flatMap(encodings), ...tokens];
    // The logs at --debug say what happened (releases, requests, mounts), never with a key.
    const text = async (l: string | undefined) => readFile(l!, "utf8").catch(() => "");
    expect(await text(logs[0])).toContain('"path":"/v1/volumes/');
    expect(await text(logs.find((l) => l.includes("agent-alpha")))).toContain("mount key released");
    expect(await text(logs.find((l) => l.includes("mnt")))).toContain("server hardened");
    // Nor in the volumes' own configs, which hold only the slot wrapped under T's KEK.
    for (const volume of [lower, lower2]) logs.push(join(volume, "cryptmount.conf"));
    for (const log of logs) {
      const text = await readFile(log, "utf8").catch(() => "");
      for (const n of needles) expect(text.includes(n), `${log} holds a secret`).toBe(false);
    }
    for (const child of started)
      await snapshotProc(child.exitCode === null ? child.pid : undefined);
    expect(new Set(procTexts.map((p) => p.pid)).size).toBeGreaterThanOrEqual(6);
    for (const { pid, what, bytes } of procTexts) {
      for (const n of needles) expect(bytes.includes(n), `${pid} ${what}`).toBe(false);
      for (const s of secrets) expect(bytes.includes(s), `${pid} ${what}`).toBe(false);
    }
  });
});
