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
  class Fuse {
    constructor(mountpoint: string, ops: Operations, options?: FuseOptions);
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mountpoint: string, cb: (err: Error | null) => void): void;
    static isConfigured(cb: (err: Error | null, configured: boolean) => void): void;
  }
  export default Fuse;
  export type { Callback };
}
