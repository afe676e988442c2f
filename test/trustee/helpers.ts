import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { approveDevice, createInvitation, setPolicy } from "../../src/trustee/admin.js";
import {
  initTrusteeDir,
  openTrusteeHome,
  readAdminKey,
  type TrusteeHome,
} from "../../src/trustee/home.js";
import { startTrusteeServer, type RunningTrustee } from "../../src/trustee/server.js";
import type { VolumePolicy } from "../../src/trustee/policy.js";
import { createDevice, loadDevice, setTrustee, type DeviceKeys } from "../../src/agent/device.js";
import { enroll } from "../../src/agent/trustee-client.js";

export const VOLUME = "vol_AAAAAAAAAAAAAAAAAAAA";

export interface Fixture {
  readonly root: string;
  readonly dir: string;
  home: TrusteeHome;
  server: RunningTrustee;
  /** Log lines the server wrote (JSON). */
  readonly logs: string[];
  clock: { offsetMs: number };
  restart(): Promise<void>;
  cleanup(): Promise<void>;
}

export async function startFixture(): Promise<Fixture> {
  const root = await mkdtemp(join(tmpdir(), "cm-trustee-"));
  const dir = join(root, "trustee");
  await initTrusteeDir(dir, { host: "127.0.0.1", port: 0, url: "https://127.0.0.1:1" });
  const logs: string[] = [];
  const logger = pino(
    { level: "debug", base: undefined },
    { write: (l: string) => void logs.push(l) },
  );
  const clock = { offsetMs: 0 };
  const now = () => new Date(Date.now() + clock.offsetMs);
  const f: Fixture = {
    root,
    dir,
    logs,
    clock,
    home: undefined as unknown as TrusteeHome,
    server: undefined as unknown as RunningTrustee,
    async restart() {
      await f.server?.close();
      await f.home?.store.close();
      f.home = await openTrusteeHome(dir);
      const port = f.server?.port ?? 0;
      f.server = await startTrusteeServer(f.home, { host: "127.0.0.1", port, logger, now });
      // The URL in invitations must name the real port.
      (f.home.config as { url: string }).url = `https://127.0.0.1:${f.server.port}`;
    },
    async cleanup() {
      await f.server?.close();
      await f.home?.store.close();
      await rm(root, { recursive: true, force: true });
    },
  };
  await f.restart();
  return f;
}

export async function newDevice(
  f: Fixture,
  name: string,
  passphrase?: Buffer,
): Promise<DeviceKeys> {
  const dir = join(f.root, `device-${name}`);
  await createDevice(dir, name, passphrase);
  return loadDevice(dir, passphrase);
}

/** Invitation → enrollment → (optionally) approval, as the CLI does it. */
export async function enrolled(
  f: Fixture,
  name: string,
  options: { approve?: boolean; notAfter?: string } = {},
): Promise<{ device: DeviceKeys; sas: string }> {
  const device = await newDevice(f, name);
  const { invitation } = await createInvitation(f.home, name, 600);
  const { result, invitation: inv } = await enroll(device, invitation);
  await setTrustee(device.dir, inv, result.sas);
  if (options.approve !== false) {
    await approveDevice(f.home, await readAdminKey(f.dir), result.deviceId, {
      sas: result.sas,
      ...(options.notAfter ? { notAfter: options.notAfter } : {}),
    });
  }
  return { device: await loadDevice(device.dir), sas: result.sas };
}

export async function policy(
  f: Fixture,
  members: DeviceKeys[],
  extra: Partial<Omit<VolumePolicy, "volumeId" | "version" | "members">> = {},
  volumeId = VOLUME,
): Promise<VolumePolicy> {
  return setPolicy(f.home, { volumeId, members: members.map((m) => m.profile.deviceId), ...extra });
}

export async function auditEvents(
  f: Fixture,
): Promise<{ event: string; outcome: string; rule: string | null; device: string | null }[]> {
  return (await f.home.store.readAudit()).map((r) => JSON.parse(r.text));
}
