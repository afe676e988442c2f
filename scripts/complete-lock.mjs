// Completes package-lock.json with the platform-specific optional packages that
// the npm registry mirror of our build machines does not carry (it serves only
// linux-x64/arm64 builds of, e.g., @rollup/rollup-*). npm leaves those out of
// the lock when it cannot fetch them, and `npm ci` then refuses the lock as out
// of sync. Each added entry carries os/cpu (read off the package name) so npm
// skips it on every other platform without fetching it.
// Run after every `npm install`:  node scripts/complete-lock.mjs package-lock.json
import { readFileSync, writeFileSync } from "node:fs";
const path = process.argv[2] ?? "package-lock.json";
const lock = JSON.parse(readFileSync(path, "utf8"));
const pk = lock.packages;
const OS = {
  android: "android",
  darwin: "darwin",
  freebsd: "freebsd",
  linux: "linux",
  openbsd: "openbsd",
  openharmony: "openharmony",
  win32: "win32",
  netbsd: "netbsd",
  sunos: "sunos",
  aix: "aix",
  wasm32: undefined,
};
const CPU = [
  "arm64",
  "x64",
  "ia32",
  "arm",
  "loong64",
  "ppc64",
  "riscv64",
  "s390x",
  "wasm32",
  "mips64el",
];
let added = 0;
for (const [key, entry] of Object.entries(pk)) {
  for (const [dep, spec] of Object.entries(entry.optionalDependencies ?? {})) {
    const where = key ? `${key}/node_modules/${dep}` : `node_modules/${dep}`;
    if (pk[where] || pk[`node_modules/${dep}`]) continue;
    const base = dep.split("/").pop();
    const os =
      base === "fsevents"
        ? "darwin"
        : Object.keys(OS).find(
            (o) => base.includes(`-${o}-`) || base.startsWith(`${o}-`) || base.includes(`-${o}`),
          );
    const cpu = CPU.find((c) => base.includes(`-${c}`));
    pk[`node_modules/${dep}`] = {
      version: spec.replace(/^[~^]/, ""),
      dev: entry.dev,
      optional: true,
      os: os ? [os] : undefined,
      cpu: cpu ? [cpu] : undefined,
    };
    added++;
  }
}
writeFileSync(path, JSON.stringify(lock, null, 2) + "\n");
console.log(`complete-lock: added ${added} platform entries`);
