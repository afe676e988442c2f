import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { EXIT, UserError } from "./errors.js";

/**
 * Our Node-API addons (native/*, built into build/ by
 * scripts/build-native.mjs): one loader, so a missing or stale build says
 * the same clear thing whichever addon it is.
 */
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** build/cryptmount_<name>.node */
export function addonPath(name: string): string {
  return join(root, "build", `cryptmount_${name}.node`);
}

/** Loads an addon; `current` says whether it matches this build of the JS side. */
export function loadAddon<T>(name: string, what: string, current: (addon: T) => boolean): T {
  const require = createRequire(import.meta.url);
  let addon: T;
  try {
    addon = require(addonPath(name)) as T;
  } catch (err) {
    throw new UserError(
      `the ${what} is not built (${(err as Error).message.split("\n")[0]}); run: node scripts/build-native.mjs`,
      EXIT.failure,
    );
  }
  if (!current(addon))
    throw new UserError(
      `the ${what} is out of date; run: node scripts/build-native.mjs`,
      EXIT.failure,
    );
  return addon;
}
