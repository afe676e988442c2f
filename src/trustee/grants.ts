import {
  evaluateStanding,
  policyProblem,
  type Decision,
  type DeviceStanding,
  type VolumePolicy,
} from "./policy.js";

/**
 * Volume-creation grants (docs/trustee.md §8.4): the admin lets one device
 * register new volume names itself, so `cryptmount init --trustee URL` needs
 * no admin step per volume. A grant is a policy template: a volume the
 * device registers gets a policy with the device as its only member and the
 * grant's rules. Pure: the server gathers the inputs, the store does the
 * atomic insert.
 */

/** The release rules a grant hands on to every volume it creates. */
export type PolicyRules = Omit<VolumePolicy, "volumeId" | "version" | "members" | "createdBy">;

export interface VolumeGrant {
  readonly deviceId: string;
  /** At most this many volumes registered by the device, ever (each stays until the admin removes it). */
  readonly maxVolumes: number;
  readonly rules: PolicyRules;
}

export const DEFAULT_MAX_VOLUMES = 100;

/** The policy a registration creates: version 1, the registering device its only member. */
export function policyFromGrant(grant: VolumeGrant, volumeId: string): VolumePolicy {
  return {
    ...grant.rules,
    volumeId,
    version: 1,
    members: [grant.deviceId],
    createdBy: grant.deviceId,
  };
}

const GRANT_MEMBERS = new Set(["deviceId", "maxVolumes", "rules"]);

/** Checks a grant from storage or the CLI; returns a problem or undefined. */
export function grantProblem(g: VolumeGrant): string | undefined {
  for (const k of Object.keys(g))
    if (!GRANT_MEMBERS.has(k)) return `grant member ${k} is not supported by this trustee`;
  if (!Number.isSafeInteger(g.maxVolumes) || g.maxVolumes < 1)
    return "maxVolumes must be a positive integer";
  return policyProblem(policyFromGrant(g, "grant-check-00000"));
}

/**
 * May this device register a new volume now? Standing first (a revoked or
 * expired device registers nothing), then the grant, then its budget.
 * Whether the name is free is the store's atomic insert to decide.
 */
export function evaluateRegistration(
  device: DeviceStanding,
  grant: VolumeGrant | undefined,
  registeredSoFar: number,
  now: Date,
): Decision {
  const standing = evaluateStanding(device, now);
  if (!standing.allow) return standing;
  if (!grant || grantProblem(grant))
    return {
      allow: false,
      rule: "no_grant",
      detail: "this device may not create volumes (cryptmount trustee grant)",
    };
  if (registeredSoFar >= grant.maxVolumes)
    return {
      allow: false,
      rule: "grant_exhausted",
      detail: `the device has registered ${registeredSoFar} of ${grant.maxVolumes} volumes`,
    };
  return { allow: true };
}
