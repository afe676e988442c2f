// Rebuilds the argon2 addon from source at install time.
// The prebuilt linux-x64 glibc binary shipped in argon2 0.45.1 crashes (SIGSEGV)
// as soon as it is loaded on Debian 12 / Node 20, so we compile it here with
// npm's bundled node-gyp against the local Node headers. Idempotent: skips the
// build when build/Release/argon2.node already loads and hashes.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
const dir = dirname(require.resolve("argon2/package.json"));
const built = join(dir, "build", "Release", "argon2.node");

function works() {
  const probe = spawnSync(
    process.execPath,
    [
      "-e",
      "require(process.argv[1]).hash('probe',{raw:true,memoryCost:1024,timeCost:1}).then(()=>process.exit(0),()=>process.exit(1))",
      dir,
    ],
    { stdio: "ignore" },
  );
  return probe.status === 0;
}

if (existsSync(built) && works()) process.exit(0);

function nodeGyp() {
  const npmDir = dirname(
    dirname(
      require.resolve("npm/package.json", {
        paths: [dirname(process.execPath) + "/../lib/node_modules"],
      }),
    ),
  );
  return join(npmDir, "npm", "node_modules", "node-gyp", "bin", "node-gyp.js");
}

let gyp;
try {
  gyp = nodeGyp();
} catch {
  gyp = undefined;
}
try {
  if (gyp && existsSync(gyp))
    execFileSync(process.execPath, [gyp, "rebuild"], { cwd: dir, stdio: "inherit" });
  else execFileSync("npx", ["--yes", "node-gyp", "rebuild"], { cwd: dir, stdio: "inherit" });
} catch {
  console.error("cryptmount: building the argon2 addon failed (needs python3, make and g++)");
  process.exit(1);
}
if (!works()) {
  console.error("cryptmount: the argon2 addon still does not load after building it");
  process.exit(1);
}
