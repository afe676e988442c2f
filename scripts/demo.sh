#!/usr/bin/env bash
# The main job on defaults: set up the machine, create a volume in a temporary
# place, mount it, write a file, show the ciphertext below and the cleartext
# above, and unmount.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

work=$(mktemp -d /tmp/cryptmount-demo.XXXXXX)
lower="$work/lower" clear="$work/clear" pass="$work/passphrase" recovery="$work/recovery-key"
mkdir -p "$clear"
head -c 18 /dev/urandom | base64 > "$pass"
chmod 600 "$pass"
cleanup() { fusermount -u "$clear" 2>/dev/null || true; }
trap cleanup EXIT

echo "== cryptmount init $lower"
# The recovery key is shown only on a terminal; a script keeps it in a file (mode 0600).
cryptmount init --passfile "$pass" --recovery-key-file "$recovery" "$lower"
echo
echo "== cryptmount $lower $clear"
cryptmount "$lower" "$clear" --passfile "$pass"
mkdir "$clear/notes"
echo "Meet at the old mill at noon." > "$clear/notes/secret plan.txt"
echo
echo "== cleartext view ($clear)"
ls -lR "$clear"
echo "--- notes/secret plan.txt:"
cat "$clear/notes/secret plan.txt"
echo
echo "== what the storage provider sees ($lower)"
ls -lR "$lower"
f=$(find "$lower" -type f -path "$lower/*/*" ! -name 'cm.*' | head -1)
echo "--- first bytes of $f:"
od -A d -t x1 "$f" | head -5
echo
cryptmount status
echo
echo "== cryptmount umount $clear"
cryptmount umount "$clear"
echo "demo files left in $work (passphrase in $pass, recovery key in $recovery)"
