// The CLI and the agent end to end, as separate processes: trustee init,
// serve (--debug, logs to a file), invite, device enroll, approve, policy;
// a deposit made on the device; the agent releases the key over its socket.
// Then the trustee's whole directory and its logs are scanned for the mount
// key and the invitation token, every key the trustee holds is tried on
// every deposit, and argv/environment of the servers are checked.

import { spawn, execFile, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { lstat, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadDevice } from "../../src/agent/device.js";
import {
  agentControl,
  agentStatus,
  mountKeyFromAgent,
  AgentError,
} from "../../src/agent/client.js";
import { deposit } from "../../src/agent/trustee-client.js";
import { hpkeOpen } from "../../src/crypto/hpke.js";
import { readKeyFile } from "../../src/trustee/identity.js";
import { HPKE_INFO } from "../../src/trustee/protocol.js";

const ROOT = resolve(__dirname, "../..");
const CLI = join(ROOT, "bin/cryptmount");
const run = promisify(execFile);
const VOLUME = "cli_volume_AAAAAAAAAAAA";

async function freePort(): Promise<number> {
  return new Promise((ok) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

function cli(
  args: string[],
  input?: string,
): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((ok) => {
    const child = spawn(CLI, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => ok({ stdout, stderr, code: code ?? -1 }));
    child.stdin.end(input ?? "");
  });
}

function background(args: string[]): Promise<ChildProcess> {
  return new Promise((ok, fail) => {
    const child = spawn(CLI, args, { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    child.stdout.once("data", () => ok(child));
    child.once("exit", (code) => fail(new Error(`${args.join(" ")} exited ${code}: ${err}`)));
  });
}

async function stop(child: ChildProcess | undefined) {
  if (!child || child.exitCode !== null) return;
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

const encodings = (b: Buffer) => [
  b,
  Buffer.from(b.toString("hex")),
  Buffer.from(b.toString("base64")),
  Buffer.from(b.toString("base64url")),
];

describe("trustee CLI, device CLI and agent (separate processes)", () => {
  let root: string;
  let tdir: string;
  let ddir: string;
  let logFile: string;
  let socket: string;
  let serve: ChildProcess | undefined;
  let agent: ChildProcess | undefined;
  let invitation = "";
  let deviceId = "";
  const mk = randomBytes(32);

  beforeAll(async () => {
    await execFileSync();
    root = await mkdtemp(join(tmpdir(), "cm-trustee-cli-"));
    tdir = join(root, "trustee");
    ddir = join(root, "device");
    logFile = join(root, "trustee.log");
    socket = join(root, "run", "agent.sock");
    const port = await freePort();
    const init = await cli(["trustee", "init", tdir, "--listen", `127.0.0.1:${port}`]);
    expect(init.code, init.stderr).toBe(0);
    serve = await background(["trustee", "serve", "--dir", tdir, "--debug", "--log-file", logFile]);
  });

  afterAll(async () => {
    await stop(agent);
    await stop(serve);
    await rm(root, { recursive: true, force: true });
  });

  it("walks from invitation to a key released by the agent", async () => {
    const inv = await cli(["trustee", "invite", "--dir", tdir, "--name", "laptop", "--ttl", "10m"]);
    expect(inv.code, inv.stderr).toBe(0);
    invitation = inv.stdout.trim();
    expect(invitation).toMatch(/^cm-invite-1\./);

    const en = await cli(
      ["device", "enroll", "--device-dir", ddir, "--name", "laptop"],
      invitation + "\n",
    );
    expect(en.code, en.stderr).toBe(0);
    const code = /Verification code: (\S+)/.exec(en.stdout)![1]!;
    deviceId = /Enrolled as (\S+)/.exec(en.stdout)![1]!;

    const list = await cli(["trustee", "devices", "--dir", tdir, "--json"]);
    expect(JSON.parse(list.stdout)).toMatchObject([{ id: deviceId, state: "pending", code }]);
    const wrong = await cli([
      "trustee",
      "approve",
      deviceId,
      "--dir",
      tdir,
      "--code",
      "AAAA-AAAA-AAAA-AAAA",
    ]);
    expect(wrong.code).toBe(3);
    const ok = await cli(["trustee", "approve", deviceId, "--dir", tdir, "--code", code]);
    expect(ok.code, ok.stderr).toBe(0);
    const pol = await cli([
      "trustee",
      "policy",
      VOLUME,
      "--dir",
      tdir,
      "--member",
      deviceId,
      "--rate",
      "100/60",
      "--cidr",
      "127.0.0.0/8",
      "--window",
      "sun-sat 00:00-23:59 UTC",
    ]);
    expect(pol.code, pol.stderr).toBe(0);

    // The invitation is single use.
    const again = await cli(
      ["device", "enroll", "--device-dir", join(root, "device2"), "--name", "copy"],
      invitation,
    );
    expect(again.code).toBe(9);
    expect(again.stderr).toContain("invitation_invalid");

    const device = await loadDevice(ddir);
    expect(await deposit(device, VOLUME, mk)).toBe(1);

    expect((await stat(ddir)).mode & 0o777).toBe(0o700);
    for (const f of await readdir(ddir))
      expect((await stat(join(ddir, f))).mode & 0o777).toBe(0o600);
    const before = await snapshot([ddir, join(root, "run")]);

    agent = await background([
      "agent",
      "run",
      "--socket",
      socket,
      "--device-dir",
      ddir,
      "--idle-ttl",
      "1",
      "--debug",
      "--log-file",
      join(root, "agent.log"),
    ]);
    expect((await lstat(socket)).mode & 0o777).toBe(0o600);
    expect((await stat(join(root, "run"))).mode & 0o777).toBe(0o700);

    const first = await mountKeyFromAgent({
      volumeId: VOLUME,
      socketPath: socket,
      trusteeId: device.profile.trustee!.tid,
    });
    expect(first.mountKey.equals(mk)).toBe(true);
    expect((await agentStatus(socket)).entries).toHaveLength(1);
    // Idle expiry, then a new release.
    await new Promise((r) => setTimeout(r, 1600));
    expect((await agentStatus(socket)).entries).toHaveLength(0);
    expect(
      (await mountKeyFromAgent({ volumeId: VOLUME, socketPath: socket })).mountKey.equals(mk),
    ).toBe(true);
    await agentControl("forget", socket, VOLUME);
    expect((await agentStatus(socket)).entries).toHaveLength(0);
    await agentControl("lock", socket);
    const locked = await mountKeyFromAgent({ volumeId: VOLUME, socketPath: socket }).catch(
      (e: unknown) => e,
    );
    expect(locked).toBeInstanceOf(AgentError);
    await agentControl("unlock", socket);
    const wrongTrustee = await mountKeyFromAgent({
      volumeId: VOLUME,
      socketPath: socket,
      trusteeId: "x".repeat(43),
    }).catch((e: unknown) => e);
    expect(wrongTrustee).toBeInstanceOf(AgentError);

    // Nothing key-related written by the agent: only its socket appeared.
    const after = await snapshot([ddir, join(root, "run")]);
    expect(after.filter((p) => !before.includes(p))).toEqual([socket]);
    for (const p of before) expect(after).toContain(p);

    const verify = await cli(["trustee", "audit", "verify", "--dir", tdir]);
    expect(verify.code, verify.stderr).toBe(0);
  });

  it("the trustee's directory and logs hold neither the mount key nor the invitation token", async () => {
    const token = Buffer.from(
      JSON.parse(Buffer.from(invitation.slice("cm-invite-1.".length), "base64url").toString())
        .token as string,
    );
    expect((await stat(tdir)).mode & 0o777).toBe(0o700);
    for (const file of await filesUnder(tdir))
      expect((await stat(file)).mode & 0o777, file).toBe(0o600);
    const files = [...(await filesUnder(tdir)), logFile, join(root, "agent.log")];
    expect(files.some((f) => f.endsWith("state.db"))).toBe(true);
    for (const file of files) {
      const bytes = await readFile(file);
      for (const needle of [...encodings(mk), token])
        expect(bytes.includes(needle), `${file} contains a secret`).toBe(false);
    }
    const logs = await readFile(logFile, "utf8");
    expect(logs).toContain('"path":"/v1/volumes/');
  });

  it("no key the trustee holds opens any deposit", async () => {
    const db = new Database(join(tdir, "state.db"), { readonly: true });
    const deposits = db.prepare("SELECT hdr, enc, ct FROM deposits").all() as {
      hdr: string;
      enc: string;
      ct: string;
    }[];
    db.close();
    expect(deposits.length).toBeGreaterThan(0);
    const keys = [
      await readKeyFile(join(tdir, "trustee.key")),
      await readKeyFile(join(tdir, "admin.key")),
    ];
    for (const k of keys) {
      const seed = Buffer.from(k.export({ format: "jwk" }).d!, "base64url");
      const pub = Buffer.from(k.export({ format: "jwk" }).x!, "base64url");
      for (const d of deposits) {
        const sealed = { enc: Buffer.from(d.enc, "base64url"), ct: Buffer.from(d.ct, "base64url") };
        // The Ed25519 seeds used as X25519 private keys, with their own and the deposit's public halves.
        for (const pk of [pub, Buffer.alloc(32)])
          expect(
            await hpkeOpen(
              seed,
              pk,
              Buffer.from(HPKE_INFO.deposit),
              Buffer.from(d.hdr, "base64url"),
              sealed,
            ),
          ).toBeUndefined();
      }
    }
  });

  it("no secret in the servers' argv or environment", async () => {
    const token = JSON.parse(
      Buffer.from(invitation.slice("cm-invite-1.".length), "base64url").toString(),
    ).token as string;
    for (const child of [serve, agent]) {
      const pids = await descendants(child!.pid!);
      for (const pid of pids) {
        for (const what of ["cmdline", "environ"]) {
          const text = await readFile(`/proc/${pid}/${what}`).catch(() => Buffer.alloc(0));
          for (const needle of [...encodings(mk), Buffer.from(token)])
            expect(text.includes(needle)).toBe(false);
        }
      }
    }
  });
});

async function snapshot(dirs: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const d of dirs) {
    const entries = await readdir(d).catch(() => []);
    for (const e of entries) out.push(join(d, e));
  }
  return out.sort();
}

async function descendants(pid: number): Promise<number[]> {
  const out = [pid];
  const children = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "");
  for (const c of children.trim().split(/\s+/).filter(Boolean))
    out.push(...(await descendants(Number(c))));
  return out;
}

function execFileSync() {
  // bin/cryptmount runs dist/: build it first.
  return run("npx", ["tsc", "-p", "tsconfig.json"], { cwd: ROOT });
}
