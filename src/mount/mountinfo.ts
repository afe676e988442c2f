import { readFile } from "node:fs/promises";

/** One line of /proc/self/mountinfo. */
export interface MountEntry {
  readonly mountpoint: string;
  /** major:minor of the mounted device (for FUSE: the connection number under /sys/fs/fuse/connections). */
  readonly device: string;
  readonly fstype: string;
  readonly source: string;
  readonly options: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    const [left, right] = line.split(" - ");
    if (!left || !right) continue;
    const l = left.split(" ");
    const r = right.split(" ");
    entries.push({
      mountpoint: unescape(l[4] ?? ""),
      device: l[2] ?? "",
      options: l[5] ?? "",
      fstype: r[0] ?? "",
      source: unescape(r[1] ?? ""),
    });
  }
  return entries;
}

export async function currentMounts(): Promise<MountEntry[]> {
  return parseMountinfo(await readFile("/proc/self/mountinfo", "utf8"));
}

export const FSTYPE = "fuse.cryptmount";
