/** The slice of fuse-native (as patched by patches/fuse-native+2.2.6.patch) that the adapter uses. */
declare module "fuse-native" {
  type Callback = (code: number, ...results: unknown[]) => void;
  export interface FuseOptions {
    displayFolder?: boolean;
    debug?: boolean;
    force?: boolean;
    mkdir?: boolean;
    allowOther?: boolean;
    defaultPermissions?: boolean;
    timeout?: number | false;
    fsname?: string;
    subtype?: string;
    attrTimeout?: number;
    entryTimeout?: number;
    extraOptions?: string[];
    onExternalUnmount?: () => void;
  }
  export type Operations = Record<string, (...args: never[]) => void>;
  /** The process that made a FUSE request, captured on the FUSE thread. */
  export interface FuseContext {
    uid: number;
    gid: number;
    /** Thread id of the caller (its pid for a single-threaded process); 0 for requests the kernel makes on its own. */
    pid: number;
    /** The caller's umask (meaningful for create, mkdir, mknod; the kernel has already applied it to `mode`). */
    umask: number;
  }
  /** A time as ops.utimens receives it: nanoseconds since the epoch (may be negative), or UTIME_NOW / UTIME_OMIT. */
  export type FuseTime = bigint | "now" | "omit";
  class Fuse {
    constructor(mountpoint: string, ops: Operations, options?: FuseOptions);
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    /** Like `Fuse.context()`, but null unless the running handler belongs to this mount. */
    context(): FuseContext | null;
    /**
     * The caller of the request whose ops handler is running. Only valid
     * synchronously inside the handler (before its first await or callback
     * hop); null anywhere else.
     */
    static context(): FuseContext | null;
    /**
     * utimensat(AT_FDCWD, path, [atime, mtime], noFollow ? AT_SYMLINK_NOFOLLOW : 0),
     * synchronously. Throws like node:fs (`code` 'ENOENT', `errno` -2,
     * `syscall` 'utimensat', `path`); TypeError on bad arguments. Never use
     * it on a path inside a mount served by this process.
     */
    static utimensat(
      path: string | Buffer,
      atime: FuseTime,
      mtime: FuseTime,
      noFollow?: boolean,
    ): void;
    static unmount(mountpoint: string, cb: (err: Error | null) => void): void;
    static isConfigured(cb: (err: Error | null, configured: boolean) => void): void;
    /** Patch level of the loaded binary (0 = not the cryptmount build). */
    static readonly CRYPTMOUNT_PATCH_LEVEL: number;
  }
  export default Fuse;
  export type { Callback };
}
