import type { Socket } from "node:net";
import { secureNative } from "../mount/hardening.js";

/**
 * Who is on the other end of an accepted Unix socket: SO_PEERCRED through
 * the hardening addon. Node exposes no API for it; the descriptor comes from
 * the socket's libuv handle (`_handle.fd`, present for pipes on Linux).
 * Undefined when the addon or the descriptor is not available: the agent
 * then relies on its socket's permissions alone (docs/trustee.md §11).
 */
export interface PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

export function peerCheckAvailable(): boolean {
  try {
    return typeof secureNative().peerCredentials === "function";
  } catch {
    return false;
  }
}

export function peerCredentials(socket: Socket): PeerCredentials | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== "number" || fd < 0 || !peerCheckAvailable()) return undefined;
  try {
    return secureNative().peerCredentials!(fd);
  } catch {
    return undefined;
  }
}
