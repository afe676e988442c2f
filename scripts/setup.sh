#!/usr/bin/env bash
# Prepares a fresh Debian machine (as root) to build, run and test cryptmount:
# system packages, npm dependencies (which patch and build the native addons),
# the TypeScript build, and /usr/local/bin/cryptmount for mount(8) and fstab.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(fuse3 libfuse3-dev libfuse2 libfuse-dev pkg-config patch make g++ python3 sqlite3 rsync git attr gocryptfs fio util-linux libpam0g-dev pamtester rclone nbdkit libnbd-bin gnutls-bin e2fsprogs)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
else
  echo "setup: not root or no apt-get; make sure these are installed: ${PACKAGES[*]}" >&2
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
# node_modules may be current while the PAM module (added later) was never built.
[ -f build/pam_cryptmount.so ] || node scripts/build-native.mjs
npm run --silent build

# mount.fuse runs "cryptmount" from PATH for type fuse.cryptmount; boot-time PATHs
# may lack node's directory, so the wrapper names both by absolute path.
if [ "$(id -u)" = 0 ]; then
  cat > /usr/local/bin/cryptmount <<WRAP
#!/bin/sh
exec $(command -v node) $(pwd)/dist/cli/main.js "\$@"
WRAP
  chmod 755 /usr/local/bin/cryptmount
fi
