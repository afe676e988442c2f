import { connect } from "node:net";
import { EXIT, UserError, type ExitCode } from "../errors.js";
import type { AgentRequest, AgentResponse, AgentStatus } from "./agent.js";
import { defaultSocketPath } from "./agent.js";

/**
 * The agent's client side: what `cryptmount mount` (and `cryptmount agent
 * lock|forget|status`) call. One JSON line out, one back, per connection.
 */

export class AgentError extends UserError {
  constructor(
    message: string,
    exitCode: ExitCode,
    readonly rule?: string,
  ) {
    super(message, exitCode);
    this.name = "AgentError";
  }
}

export async function agentRequest(
  req: AgentRequest,
  socketPath = defaultSocketPath(),
): Promise<AgentResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let data = "";
    socket.setEncoding("utf8");
    socket.setTimeout(90_000, () => socket.destroy(new Error("timed out")));
    socket.on("connect", () => socket.write(JSON.stringify(req) + "\n"));
    socket.on("data", (c: string) => (data += c));
    socket.on("error", (err: NodeJS.ErrnoException) =>
      reject(
        new AgentError(
          `no cryptmount agent at ${socketPath} (${err.code ?? err.message}); start one with: cryptmount agent`,
          EXIT.trusteeUnreachable,
        ),
      ),
    );
    socket.on("end", () => {
      try {
        resolve(JSON.parse(data) as AgentResponse);
      } catch {
        reject(new AgentError("the agent answered nonsense", EXIT.failure));
      }
    });
  });
}

function check(res: AgentResponse): Extract<AgentResponse, { ok: true }> {
  if (!res.ok) throw new AgentError(res.error, (res.exit as ExitCode) ?? EXIT.failure, res.rule);
  return res;
}

/**
 * "Give me the mount key for volume V from trustee T": the mount path calls
 * this with the trustee slot's `tid` (docs/trustee.md §12). The caller owns
 * the returned buffer and wipes it.
 */
export async function mountKeyFromAgent(options: {
  volumeId: string;
  trusteeId?: string;
  keyVersion?: number;
  socketPath?: string;
}): Promise<{ mountKey: Buffer; keyVersion: number; leaseExpiresAt?: string }> {
  const res = check(
    await agentRequest(
      {
        op: "get",
        volume: options.volumeId,
        ...(options.trusteeId ? { trustee: options.trusteeId } : {}),
        ...(options.keyVersion ? { key_version: options.keyVersion } : {}),
      },
      options.socketPath,
    ),
  );
  return {
    mountKey: Buffer.from(res.key ?? "", "base64url"),
    keyVersion: res.key_version ?? 0,
    ...(res.lease_expires_at ? { leaseExpiresAt: res.lease_expires_at } : {}),
  };
}

/** §8.6: the mount's lease on `volumeId` renewed through the agent; resolves with its new end. */
export async function renewLeaseThroughAgent(options: {
  volumeId: string;
  trusteeId?: string;
  socketPath?: string;
}): Promise<string> {
  const res = check(
    await agentRequest(
      {
        op: "renew",
        volume: options.volumeId,
        ...(options.trusteeId ? { trustee: options.trusteeId } : {}),
      },
      options.socketPath,
    ),
  );
  if (!res.lease_expires_at) throw new AgentError("the agent returned no lease", EXIT.failure);
  return res.lease_expires_at;
}

export async function agentControl(
  op: "lock" | "unlock" | "forget",
  socketPath?: string,
  volume?: string,
): Promise<void> {
  check(
    await agentRequest(
      op === "forget" ? { op, ...(volume ? { volume } : {}) } : { op },
      socketPath,
    ),
  );
}

export async function agentStatus(socketPath?: string): Promise<AgentStatus> {
  return check(await agentRequest({ op: "status" }, socketPath)).status!;
}
