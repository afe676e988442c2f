#!/usr/bin/env node
// Builds cryptmount's FUSE binding (native/fuse3/binding.c, libfuse 3
// low-level API, Node-API) into build/cryptmount_fuse3.node.
//
// A Node-API addon needs no link step against Node, so this is one compiler
// call: cc -shared with Node's headers and `pkg-config fuse3`. No node-gyp,
// no network. Runs from "postinstall"; safe to run again at any time.
//
// Needs: a C compiler (cc), pkg-config and libfuse3-dev
// (apt-get install -y gcc pkg-config libfuse3-dev).
// CRYPTMOUNT_SKIP_NATIVE_BUILD=1 skips the build (exit 0).

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const source = path.join(root, "native", "fuse3", "binding.c");
const output = path.join(root, "build", "cryptmount_fuse3.node");

function fail(message) {
  console.error(`build-native: error: ${message}`);
  process.exit(1);
}

function pkgConfig(flag) {
  const r = spawnSync("pkg-config", [flag, "fuse3"], { encoding: "utf8" });
  if (r.error || r.status !== 0)
    fail(
      "libfuse 3 development files not found; install them: apt-get install -y libfuse3-dev pkg-config",
    );
  return r.stdout.trim().split(/\s+/).filter(Boolean);
}

/** Directory with node_api.h for the Node that runs this script. */
function nodeIncludeDir() {
  const candidates = [];
  if (process.env.npm_config_nodedir)
    candidates.push(path.join(process.env.npm_config_nodedir, "include", "node"));
  candidates.push(path.resolve(path.dirname(process.execPath), "..", "include", "node"));
  candidates.push("/usr/include/node", "/usr/local/include/node");
  const found = candidates.find((dir) => fs.existsSync(path.join(dir, "node_api.h")));
  if (!found) fail(`Node headers (node_api.h) not found in ${candidates.join(", ")}`);
  return found;
}

if (process.env.CRYPTMOUNT_SKIP_NATIVE_BUILD === "1") {
  console.log("build-native: CRYPTMOUNT_SKIP_NATIVE_BUILD=1, skipping");
  process.exit(0);
}
if (process.platform !== "linux") {
  console.warn(`build-native: warning: FUSE is only built on Linux (this is ${process.platform})`);
  process.exit(0);
}

fs.mkdirSync(path.dirname(output), { recursive: true });
const args = [
  "-O2",
  "-g",
  "-Wall",
  "-Wextra",
  "-Werror",
  "-shared",
  "-fPIC",
  "-DNODE_GYP_MODULE_NAME=cryptmount_fuse3",
  `-I${nodeIncludeDir()}`,
  ...pkgConfig("--cflags"),
  source,
  "-o",
  output + ".tmp",
  ...pkgConfig("--libs"),
];
const cc = process.env.CC || "cc";
const r = spawnSync(cc, args, { stdio: "inherit" });
if (r.error) fail(`${cc} not found; install a C compiler: apt-get install -y gcc`);
if (r.status !== 0) fail(`${cc} failed (exit ${r.status})`);
fs.renameSync(output + ".tmp", output);
console.log(`build-native: built ${path.relative(root, output)}`);

// Process hardening (native/secure/secure.c: core dumps, mlock, RLIMIT_NOFILE): no library, same flags.
const secureSource = path.join(root, "native", "secure", "secure.c");
const secureOutput = path.join(root, "build", "cryptmount_secure.node");
if (fs.existsSync(secureSource)) {
  const flags = args.slice(0, args.indexOf(`-DNODE_GYP_MODULE_NAME=cryptmount_fuse3`));
  const s = spawnSync(
    cc,
    [
      ...flags,
      "-DNODE_GYP_MODULE_NAME=cryptmount_secure",
      `-I${nodeIncludeDir()}`,
      secureSource,
      "-o",
      secureOutput + ".tmp",
    ],
    { stdio: "inherit" },
  );
  if (s.error || s.status !== 0) fail(`${cc} failed on ${path.relative(root, secureSource)}`);
  fs.renameSync(secureOutput + ".tmp", secureOutput);
  console.log(`build-native: built ${path.relative(root, secureOutput)}`);
}
