import type { Logger } from "pino";
import type { FileSystem } from "../types.js";
import { LowLevelAdapter } from "./adapter.js";
import { nativeBinding, type Session } from "./binding.js";

export interface MountOptions {
  readonly allowOther?: boolean;
  /** "dev" and "suid": without them the kernel mounts nodev,nosuid (libfuse's default). */
  readonly devices?: boolean;
  readonly setuid?: boolean;
  readonly readOnly?: boolean;
  /** Source shown by mount(8), already escaped for libfuse's option parser. */
  readonly fsname: string;
  /** Called when the mount ends without unmount(): fusermount -u, umount, an abort. */
  readonly onExternalUnmount: () => void;
  /** See DEFAULT_SPIN_US. */
  readonly spinMicroseconds?: number;
}

/** How long the kernel may trust a name or attributes before asking again (as gocryptfs and libfuse do). */
const ENTRY_TIMEOUT_S = 1;
const ATTR_TIMEOUT_S = 1;
/** 1 MiB WRITE requests (libfuse 3 negotiates max_pages). */
const MAX_WRITE = 1 << 20;
/**
 * How long the loop keeps polling for the next request after a busy batch
 * before it sleeps (native/fuse3/binding.c, on_readable). 0 turns it off.
 */
export const DEFAULT_SPIN_US = 50;

/**
 * A mount by root without allow_other serves only processes whose real,
 * effective and saved uids are all 0 (the kernel refuses all others), and
 * root passes every permission check but execution: the kernel's checks (default_permissions)
 * would decide nothing, yet cost a GETATTR of the parent directory after
 * each create or unlink in it. Such a mount leaves them out, as gocryptfs
 * does; CryptFs.access answers access(2) for root. Every other mount keeps
 * them.
 */
export function servesRootAlone(options: Pick<MountOptions, "allowOther">): boolean {
  return process.getuid?.() === 0 && !options.allowOther;
}

/** A mounted FileSystem, served through libfuse 3 on this process's event loop. */
export class FuseMount {
  private session: Session | undefined;
  private unmounting = false;

  constructor(
    readonly mountpoint: string,
    private readonly fs: FileSystem,
    private readonly options: MountOptions,
    private readonly log: Logger,
  ) {}

  /** Resolves once the kernel has completed the FUSE handshake. */
  mount(): Promise<void> {
    const native = nativeBinding();
    return new Promise((resolve, reject) => {
      const adapter = new LowLevelAdapter(this.fs, native, this.log, {
        onInit: () => resolve(),
        onExit: () => {
          this.session = undefined;
          if (!this.unmounting) this.options.onExternalUnmount();
        },
      });
      const options = [`fsname=${this.options.fsname}`, "subtype=cryptmount"];
      if (this.options.allowOther) options.push("allow_other");
      if (!servesRootAlone(this.options)) options.push("default_permissions");
      if (this.options.devices) options.push("dev");
      if (this.options.setuid) options.push("suid");
      if (this.options.readOnly) options.push("ro");
      try {
        this.session = native.mount(
          this.mountpoint,
          options.join(","),
          adapter.dispatch,
          ENTRY_TIMEOUT_S,
          ATTR_TIMEOUT_S,
          MAX_WRITE,
          0,
          this.options.spinMicroseconds ?? DEFAULT_SPIN_US,
        );
      } catch (err) {
        reject(err as Error);
      }
    });
  }

  async unmount(): Promise<void> {
    this.unmounting = true;
    const session = this.session;
    this.session = undefined;
    if (session) nativeBinding().unmount(session);
  }
}
