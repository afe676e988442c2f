#!/usr/bin/env node
// Builds cryptmount's Node-API addons into build/cryptmount_<name>.node:
//
//   fuse3   native/fuse3/binding.c   the FUSE binding (libfuse 3 low-level API)
//   lower   native/lower/lower.c     descriptor-relative I/O on the lower directory
//   crypto  native/crypto/crypto.c   content blocks on the threadpool, AES-SIV names (OpenSSL EVP
//                                    of the node binary, through Node's bundled openssl/ headers)
//   secure  native/secure/secure.c   process hardening (core dumps, mlock, RLIMIT_NOFILE)
//
// and the PAM module for encrypted homes (not a Node addon; docs/home.md):
//
//   pam     native/pam/pam_cryptmount.c   build/pam_cryptmount.so (`pkg-config pam`)
//
// A Node-API addon needs no link step against Node, so each addon is one
// compiler call: cc -shared with Node's headers (and `pkg-config fuse3` for
// fuse3). No node-gyp, no network. Runs from "postinstall"; safe to run again
// at any time.
//
// Needs: a C compiler (cc); for fuse3 also pkg-config and libfuse3-dev
// (apt-get install -y gcc pkg-config libfuse3-dev); for the PAM module
// libpam0g-dev (without it the module is skipped with a warning: everything
// but `cryptmount home` works).
// CRYPTMOUNT_SKIP_NATIVE_BUILD=1 skips the build (exit 0).
// CRYPTMOUNT_NATIVE_FAULTS=1 builds only the test variant of the FUSE binding,
// build/cryptmount_fuse3_faults.node, whose mount() fails at the step named by
// CRYPTMOUNT_FUSE_FAIL_AT (the tests of its error paths); never loaded otherwise.

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** name -> source; `pkg`: a pkg-config package it needs; `optional`: skipped when the source is missing. */
const FAULTS = process.env.CRYPTMOUNT_NATIVE_FAULTS === "1";
const ADDONS = FAULTS
  ? [
      {
        name: "fuse3",
        output: "fuse3_faults",
        source: "native/fuse3/binding.c",
        pkg: "fuse3",
        defines: ["-DCRYPTMOUNT_FAULT_INJECTION"],
      },
    ]
  : [
      { name: "fuse3", source: "native/fuse3/binding.c", pkg: "fuse3" },
      { name: "lower", source: "native/lower/lower.c" },
      { name: "crypto", source: "native/crypto/crypto.c" },
      { name: "secure", source: "native/secure/secure.c" },
      {
        name: "pam",
        source: "native/pam/pam_cryptmount.c",
        pkg: "pam",
        file: "pam_cryptmount.so",
        softPkg: true,
        libs: ["-lpam"],
      },
    ];

function fail(message) {
  console.error(`build-native: error: ${message}`);
  process.exit(1);
}

function hasPkg(pkg) {
  const r = spawnSync("pkg-config", ["--exists", pkg]);
  return !r.error && r.status === 0;
}

function pkgConfig(flag, pkg) {
  const r = spawnSync("pkg-config", [flag, pkg], { encoding: "utf8" });
  if (r.error || r.status !== 0)
    fail(
      pkg === "fuse3"
        ? "libfuse 3 development files not found; install them: apt-get install -y libfuse3-dev pkg-config"
        : `pkg-config ${pkg} failed; install its development package and pkg-config`,
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
  console.warn(
    `build-native: warning: the native addons are only built on Linux (this is ${process.platform})`,
  );
  process.exit(0);
}

const cc = process.env.CC || "cc";
const includeDir = nodeIncludeDir();
fs.mkdirSync(path.join(root, "build"), { recursive: true });

for (const addon of ADDONS) {
  const source = path.join(root, addon.source);
  const output = path.join(
    root,
    "build",
    addon.file ?? `cryptmount_${addon.output ?? addon.name}.node`,
  );
  if (addon.optional && !fs.existsSync(source)) {
    console.log(`build-native: skipped ${addon.name} (${addon.source} does not exist)`);
    continue;
  }
  if (addon.softPkg && !hasPkg(addon.pkg)) {
    console.warn(
      `build-native: warning: skipped ${addon.name}: pkg-config ${addon.pkg} not found (apt-get install -y libpam0g-dev); \`cryptmount home\` needs it`,
    );
    continue;
  }
  const args = [
    "-O2",
    "-g",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-shared",
    "-fPIC",
    `-DNODE_GYP_MODULE_NAME=cryptmount_${addon.name}`,
    ...(addon.defines ?? []),
    `-I${includeDir}`,
    ...(addon.pkg ? pkgConfig("--cflags", addon.pkg) : []),
    source,
    "-o",
    output + ".tmp",
    ...(addon.pkg ? pkgConfig("--libs", addon.pkg) : []),
    ...(addon.libs ?? []),
  ];
  const r = spawnSync(cc, args, { stdio: "inherit" });
  if (r.error) fail(`${cc} not found; install a C compiler: apt-get install -y gcc`);
  if (r.status !== 0) fail(`${cc} failed on ${addon.source} (exit ${r.status})`);
  fs.renameSync(output + ".tmp", output);
  console.log(`build-native: built ${path.relative(root, output)}`);
}
