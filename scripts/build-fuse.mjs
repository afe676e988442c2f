#!/usr/bin/env node
// Patch fuse-native@2.2.6 and rebuild its addon against the system libfuse.
// Runs as the package.json "postinstall" script; safe to run any number of
// times (`node scripts/build-fuse.mjs`).
//
// Patch format: patches/fuse-native+2.2.6.patch is a unified diff whose paths
// are the ones patch-package writes (a/node_modules/fuse-native/<file> and
// b/node_modules/fuse-native/<file>). It is applied inside
// node_modules/fuse-native with GNU patch and -p3, which strips
// "a/node_modules/fuse-native/". See native/README.md for what it changes and
// how to regenerate it.
//
// Steps:
//   1. check the tools: pkg-config + libfuse-dev, GNU patch, make, a C
//      compiler, python3 (node-gyp needs them);
//   2. apply the patch unless the current one is already applied. Before the
//      first application the touched files are copied to
//      node_modules/fuse-native/.cryptmount-pristine/, so an updated patch can
//      be re-applied on top of pristine sources; the hash of the applied patch
//      is kept in node_modules/fuse-native/.cryptmount-patch;
//   3. `node-gyp rebuild` in node_modules/fuse-native (npm's bundled
//      node-gyp, local Node headers; no network needed), linking
//      `pkg-config --libs fuse`;
//   4. delete the shipped prebuilds so that node-gyp-build can only load
//      build/Release/fuse.node, then check that it does and that the loaded
//      binary reports the expected patch level.
//
// Environment: CRYPTMOUNT_SKIP_FUSE_BUILD=1 skips everything (exit 0).

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const FUSE_NATIVE_VERSION = "2.2.6";
// Must match CRYPTMOUNT_PATCH_LEVEL in the patched fuse-native.c.
const PATCH_LEVEL = 2;
const MARKER = "CRYPTMOUNT_PATCH_LEVEL";
const STRIP = 3; // a/node_modules/fuse-native/<file>

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const patchFile = path.join(root, "patches", `fuse-native+${FUSE_NATIVE_VERSION}.patch`);

function log(msg) {
  console.log(`build-fuse: ${msg}`);
}

function fail(msg) {
  console.error(`build-fuse: error: ${msg}`);
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { encoding: "utf8", ...opts });
}

function commandWorks(cmd, args = ["--version"]) {
  const r = run(cmd, args, { stdio: "ignore" });
  return !r.error && r.status === 0;
}

function main() {
  if (process.env.CRYPTMOUNT_SKIP_FUSE_BUILD === "1") {
    log("CRYPTMOUNT_SKIP_FUSE_BUILD=1, skipping the fuse-native build");
    return;
  }
  if (process.platform !== "linux") {
    console.warn(
      `build-fuse: warning: fuse-native is only patched and rebuilt on Linux (this is ${process.platform}); mounting will not work here`,
    );
    return;
  }

  const pkgDir = findFuseNative();
  const patchText = fs.readFileSync(patchFile, "utf8");
  const patchHash = createHash("sha256").update(patchText).digest("hex");
  const cFile = path.join(pkgDir, "fuse-native.c");
  const stampFile = path.join(pkgDir, ".cryptmount-patch");
  const buildStamp = path.join(pkgDir, "build", ".cryptmount-build");
  const addon = path.join(pkgDir, "build", "Release", "fuse.node");

  const patchedNow = () =>
    fs.readFileSync(cFile, "utf8").includes(MARKER) && readOr(stampFile) === patchHash;

  if (patchedNow() && readOr(buildStamp) === patchHash && fs.existsSync(addon)) {
    const problem = checkLoad(pkgDir, addon);
    if (!problem) {
      removePrebuilds(pkgDir);
      log(`fuse-native already patched and built (${rel(addon)})`);
      return;
    }
    log(`existing build is not usable (${problem}); rebuilding`);
  }

  checkTools();

  if (!patchedNow()) applyPatch(pkgDir, patchText, patchHash, stampFile, cFile);
  else log("patch already applied");

  build(pkgDir);
  fs.writeFileSync(buildStamp, patchHash + "\n");
  removePrebuilds(pkgDir);

  const problem = checkLoad(pkgDir, addon);
  if (problem) fail(problem);
  log(`fuse-native patched (level ${PATCH_LEVEL}) and built against system libfuse: ${rel(addon)}`);
}

function rel(p) {
  return path.relative(root, p) || ".";
}

function readOr(file, dflt = null) {
  try {
    return fs.readFileSync(file, "utf8").trim();
  } catch {
    return dflt;
  }
}

function findFuseNative() {
  const req = createRequire(path.join(root, "package.json"));
  let pkgJson;
  try {
    pkgJson = req.resolve("fuse-native/package.json");
  } catch {
    fail("fuse-native is not installed (run npm install first)");
  }
  const dir = path.dirname(pkgJson);
  const { version } = JSON.parse(fs.readFileSync(pkgJson, "utf8"));
  if (version !== FUSE_NATIVE_VERSION) {
    fail(
      `fuse-native ${version} is installed but ${rel(patchFile)} is for ${FUSE_NATIVE_VERSION}; pin fuse-native to ${FUSE_NATIVE_VERSION} or regenerate the patch (native/README.md)`,
    );
  }
  return dir;
}

function checkTools() {
  const pc = run("pkg-config", ["--exists", "fuse"]);
  if (pc.error)
    fail(
      "pkg-config not found; install pkg-config libfuse-dev: apt-get install -y pkg-config libfuse-dev",
    );
  if (pc.status !== 0)
    fail(
      "libfuse headers not found (pkg-config fuse); install libfuse-dev: apt-get install -y libfuse-dev",
    );
  if (!commandWorks("patch")) fail("GNU patch not found; install patch: apt-get install -y patch");
  if (!commandWorks("make") || !(commandWorks("cc") || commandWorks("gcc"))) {
    fail("C toolchain not found; install build-essential: apt-get install -y build-essential");
  }
  if (!commandWorks("python3"))
    fail("python3 not found (node-gyp needs it); install python3: apt-get install -y python3");
}

// Files named in the patch, relative to the package directory.
function patchedFiles(patchText) {
  const files = new Set();
  for (const line of patchText.split("\n")) {
    const m = /^(?:---|\+\+\+) (\S+)/.exec(line);
    if (!m || m[1] === "/dev/null") continue;
    const parts = m[1].split("/");
    if (parts.length <= STRIP) continue;
    files.add(parts.slice(STRIP).join("/"));
  }
  return [...files];
}

function applyPatch(pkgDir, patchText, patchHash, stampFile, cFile) {
  const backupDir = path.join(pkgDir, ".cryptmount-pristine");
  const files = patchedFiles(patchText);
  const isPatched = fs.readFileSync(cFile, "utf8").includes(MARKER);

  if (isPatched) {
    // An older version of our patch is applied: go back to pristine sources.
    if (!fs.existsSync(backupDir)) {
      fail(
        "fuse-native is patched by another version of the patch and no pristine copy is kept; reinstall it: rm -rf node_modules/fuse-native && npm install",
      );
    }
    log("a different patch version is applied; restoring pristine sources");
    for (const f of files) {
      const src = path.join(backupDir, f);
      const dst = path.join(pkgDir, f);
      if (fs.existsSync(src)) fs.copyFileSync(src, dst);
      else fs.rmSync(dst, { force: true }); // the old patch created it
    }
    fs.rmSync(path.join(pkgDir, "build"), { recursive: true, force: true });
  } else {
    // Pristine: keep a copy of every file the patch touches.
    fs.rmSync(backupDir, { recursive: true, force: true });
    for (const f of files) {
      const src = path.join(pkgDir, f);
      if (!fs.existsSync(src)) continue;
      const dst = path.join(backupDir, f);
      fs.mkdirSync(path.dirname(dst), { recursive: true });
      fs.copyFileSync(src, dst);
    }
  }

  const args = [
    `-p${STRIP}`,
    "--batch",
    "--forward",
    "--no-backup-if-mismatch",
    "-r",
    "-",
    "-i",
    patchFile,
  ];
  const dry = run("patch", ["--dry-run", ...args], { cwd: pkgDir });
  if (dry.status !== 0) {
    process.stderr.write(dry.stdout + dry.stderr);
    fail(
      `${rel(patchFile)} does not apply to ${rel(pkgDir)}; reinstall fuse-native (rm -rf node_modules/fuse-native && npm install)`,
    );
  }
  const res = run("patch", args, { cwd: pkgDir });
  if (res.status !== 0) {
    process.stderr.write(res.stdout + res.stderr);
    fail(`applying ${rel(patchFile)} failed`);
  }
  fs.writeFileSync(stampFile, patchHash + "\n");
  log(`applied ${rel(patchFile)}`);
}

function findNodeGyp() {
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  if (process.env.npm_execpath) {
    // .../npm/bin/npm-cli.js -> .../npm/node_modules/node-gyp/bin/node-gyp.js
    candidates.push(
      path.resolve(
        path.dirname(process.env.npm_execpath),
        "..",
        "node_modules",
        "node-gyp",
        "bin",
        "node-gyp.js",
      ),
    );
  }
  const nodePrefix = path.resolve(path.dirname(process.execPath), "..");
  candidates.push(
    path.join(
      nodePrefix,
      "lib",
      "node_modules",
      "npm",
      "node_modules",
      "node-gyp",
      "bin",
      "node-gyp.js",
    ),
  );
  candidates.push(path.join(root, "node_modules", "node-gyp", "bin", "node-gyp.js"));
  for (const c of candidates) {
    if (c && c.endsWith(".js") && fs.existsSync(c)) return c;
  }
  // Last resort: ask npm where its global prefix is.
  const npm = run("npm", ["prefix", "-g"]);
  if (!npm.error && npm.status === 0) {
    const c = path.join(
      npm.stdout.trim(),
      "lib",
      "node_modules",
      "npm",
      "node_modules",
      "node-gyp",
      "bin",
      "node-gyp.js",
    );
    if (fs.existsSync(c)) return c;
  }
  for (const c of ["/usr/share/nodejs/node-gyp/bin/node-gyp.js"]) {
    if (fs.existsSync(c)) return c;
  }
  return null;
}

// Directory holding include/node/{common.gypi,node_api.h} for this Node, so
// node-gyp does not try to download headers.
function findNodeDir() {
  const fromEnv = process.env.npm_config_nodedir;
  const candidates = [];
  if (fromEnv) candidates.push(fromEnv);
  candidates.push(path.resolve(path.dirname(process.execPath), ".."));
  for (const c of candidates) {
    if (
      fs.existsSync(path.join(c, "include", "node", "common.gypi")) &&
      fs.existsSync(path.join(c, "include", "node", "node_api.h"))
    ) {
      return c;
    }
  }
  return null;
}

function build(pkgDir) {
  const nodeGyp = findNodeGyp();
  if (!nodeGyp)
    fail(
      "node-gyp not found (it ships with npm); reinstall npm or add node-gyp as a devDependency",
    );
  const nodeDir = findNodeDir();
  const args = [nodeGyp, "rebuild", "--loglevel=warn"];
  if (nodeDir) args.push(`--nodedir=${nodeDir}`);
  else log("warning: local Node headers not found; node-gyp may try to download them");

  log(`building: ${process.execPath} ${args.join(" ")}`);
  const env = { ...process.env };
  // binding.gyp runs `node -e ...`: make sure it is this node.
  env.PATH = [path.dirname(process.execPath), env.PATH || ""].join(path.delimiter);
  const res = spawnSync(process.execPath, args, {
    cwd: pkgDir,
    env,
    stdio: ["ignore", "inherit", "inherit"],
  });
  if (res.error || res.status !== 0) {
    fail(`node-gyp rebuild failed in ${rel(pkgDir)} (see the output above)`);
  }
}

function removePrebuilds(pkgDir) {
  const dir = path.join(pkgDir, "prebuilds");
  if (fs.existsSync(dir)) {
    fs.rmSync(dir, { recursive: true, force: true });
    log(`removed the stock prebuilds (${rel(dir)})`);
  }
}

// Returns a problem description, or null if node-gyp-build resolves to our
// build and the binary is the patched one.
function checkLoad(pkgDir, addon) {
  const req = createRequire(path.join(pkgDir, "package.json"));
  let resolved;
  try {
    resolved = req("node-gyp-build").resolve(pkgDir);
  } catch (err) {
    return `node-gyp-build cannot resolve the addon: ${err.message.split("\n")[0]}`;
  }
  if (path.resolve(resolved) !== path.resolve(addon)) {
    return `node-gyp-build resolves to ${rel(resolved)} instead of ${rel(addon)}`;
  }
  // Load it in a separate process, so a broken binary cannot take us down.
  const probe = run(process.execPath, [
    "-e",
    "process.stdout.write(String(require(process.argv[1]).cryptmount_patch_level || 0))",
    addon,
  ]);
  if (probe.status !== 0)
    return `loading ${rel(addon)} failed: ${(probe.stderr || "").trim().split("\n")[0]}`;
  if (probe.stdout.trim() !== String(PATCH_LEVEL)) {
    return `${rel(addon)} reports patch level ${probe.stdout.trim()}, expected ${PATCH_LEVEL}`;
  }
  return null;
}

main();
