import cliProgress from "cli-progress";

import { noProgress, type Progress } from "../volume/progress.js";

/** A bar on a terminal, nothing otherwise. */
export function terminalProgress(label: string, unit = "files"): Progress {
  if (!process.stderr.isTTY) return noProgress;
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% {value}/{total} ${unit} eta {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  return {
    start: (total) => bar.start(total, 0),
    tick: (amount = 1) => bar.increment(amount),
    stop: () => bar.stop(),
  };
}
