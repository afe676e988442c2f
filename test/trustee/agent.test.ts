// The key agent in process, against a real trustee: hard TTL, shared
// releases, and peers of another user refused by SO_PEERCRED.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod } from "node:fs/promises";
import { dirname, join } from "node:path";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startAgent, type RunningAgent } from "../../src/agent/agent.js";
import { agentStatus, mountKeyFromAgent } from "../../src/agent/client.js";
import { deposit } from "../../src/agent/trustee-client.js";
import { revokeDevice } from "../../src/trustee/admin.js";
import { auditEvents, enrolled, policy, startFixture, VOLUME, type Fixture } from "./helpers.js";

describe("key agent", () => {
  let f: Fixture;
  let agent: RunningAgent | undefined;
  const mk = randomBytes(32);
  const logs: string[] = [];

  async function start(options: { idleTtl?: number; maxTtl?: number; agentTtl?: number } = {}) {
    const { device } = await enrolled(f, "agent-host");
    await policy(f, [device], options.agentTtl !== undefined ? { agentTtl: options.agentTtl } : {});
    await deposit(device, VOLUME, mk);
    agent = await startAgent({
      socketPath: join(f.root, "run", "agent.sock"),
      device,
      logger: pino(
        { level: "debug", base: undefined },
        { write: (l: string) => void logs.push(l) },
      ),
      ...(options.idleTtl !== undefined ? { idleTtl: options.idleTtl } : {}),
      ...(options.maxTtl !== undefined ? { maxTtl: options.maxTtl } : {}),
    });
    return { socket: agent.socketPath, device };
  }

  beforeEach(async () => {
    f = await startFixture();
  });
  afterEach(async () => {
    await agent?.close();
    agent = undefined;
    await f.cleanup();
  });

  it("drops a key at the hard TTL even while it is being used", async () => {
    const { socket } = await start({ idleTtl: 60, maxTtl: 1 });
    expect(
      (await mountKeyFromAgent({ volumeId: VOLUME, socketPath: socket })).mountKey.equals(mk),
    ).toBe(true);
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 300));
      await mountKeyFromAgent({ volumeId: VOLUME, socketPath: socket });
    }
    await new Promise((r) => setTimeout(r, 300));
    expect((await agentStatus(socket)).entries).toHaveLength(0);
    expect(logs.some((l) => l.includes('"why":"max_ttl"'))).toBe(true);
  });

  it("keeps a key no longer than the policy's agent TTL", async () => {
    const { socket } = await start({ idleTtl: 60, maxTtl: 3600, agentTtl: 1 });
    await mountKeyFromAgent({ volumeId: VOLUME, socketPath: socket });
    expect((await agentStatus(socket)).entries).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 1300));
    expect((await agentStatus(socket)).entries).toHaveLength(0);
    const r = await mountKeyFromAgent({ volumeId: VOLUME, socketPath: socket });
    expect(r.mountKey.equals(mk)).toBe(true);
    expect((await auditEvents(f)).filter((e) => e.event === "release")).toHaveLength(2);
  });

  it("agent TTL 0: nothing kept, so a revocation stops the very next ask", async () => {
    const { socket, device } = await start({ agentTtl: 0 });
    const keys = await Promise.all(
      Array.from({ length: 3 }, () => mountKeyFromAgent({ volumeId: VOLUME, socketPath: socket })),
    );
    for (const k of keys) expect(k.mountKey.equals(mk)).toBe(true);
    expect((await agentStatus(socket)).entries).toHaveLength(0);
    expect((await auditEvents(f)).filter((e) => e.event === "release")).toHaveLength(3);
    await revokeDevice(f.home, device.profile.deviceId, "stolen", "admin");
    await expect(mountKeyFromAgent({ volumeId: VOLUME, socketPath: socket })).rejects.toMatchObject(
      { rule: "device_revoked" },
    );
  });

  it("concurrent requests for one volume share one release", async () => {
    const { socket } = await start();
    const keys = await Promise.all(
      Array.from({ length: 6 }, () => mountKeyFromAgent({ volumeId: VOLUME, socketPath: socket })),
    );
    for (const k of keys) expect(k.mountKey.equals(mk)).toBe(true);
    expect((await auditEvents(f)).filter((e) => e.event === "release")).toHaveLength(1);
  });

  it.runIf(process.getuid?.() === 0)(
    "refuses a peer of another user (SO_PEERCRED), even through open permissions",
    async () => {
      const { socket } = await start();
      expect((await agentStatus(socket)).peerCheck).toBe(true);
      // Open the door on purpose: only the credential check is left.
      await chmod(f.root, 0o711);
      await chmod(dirname(socket), 0o755);
      await chmod(socket, 0o666);
      const script = `const s=require("net").connect(${JSON.stringify(socket)});let d="";s.on("data",c=>d+=c);s.on("connect",()=>s.write('{"op":"get","volume":"${VOLUME}"}\\n'));s.on("close",()=>{process.stdout.write(d.includes("key")?"GOT KEY":"refused");});s.on("error",()=>{});`;
      const out = await new Promise<string>((ok) => {
        const child = spawn(process.execPath, ["-e", script], {
          uid: 65534,
          gid: 65534,
          stdio: ["ignore", "pipe", "inherit"],
        });
        let text = "";
        child.stdout.on("data", (d) => (text += d));
        child.on("exit", () => ok(text));
      });
      expect(out).toBe("refused");
      expect(logs.some((l) => l.includes("another user") && l.includes('"uid":65534'))).toBe(true);
      // The owner still gets through.
      expect(
        (await mountKeyFromAgent({ volumeId: VOLUME, socketPath: socket })).mountKey.equals(mk),
      ).toBe(true);
    },
  );
});
