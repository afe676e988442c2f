import { FsError } from "../errors.js";
import type { Directory } from "../types.js";

/** One name of a node: an entry `name` in directory `parent`. */
export interface NodeName {
  parent: Node;
  name: string;
}

/**
 * What the kernel knows as one inode, by the node ID it was given. All
 * names of one lower inode (hard links) share a node, as the kernel expects:
 * a link count or size changed through one name is then seen through all.
 */
export interface Node {
  readonly id: number;
  /** `dev:ino` of the lower inode. */
  readonly inode: string;
  /** Its current names; the first one gives its path. Empty once all are unlinked. */
  readonly names: NodeName[];
  /** How many times the kernel was told of this node (it forgets as many). */
  lookups: number;
  /**
   * Open file handles on it, so an unlinked but open file keeps its
   * attributes. Made at the first open: most nodes are never opened, and an
   * empty Set costs more than the rest of the node.
   */
  handles?: Set<number>;
  /** The filesystem's handle on it, for a directory: everything inside is named relative to it. */
  dir?: Directory;
}

export const ROOT_ID = 1;

/**
 * Node IDs of the low-level FUSE API over a path-based filesystem. IDs are
 * never reused; lookups are counted so a node lives exactly as long as the
 * kernel or an open file needs it.
 */
export class NodeTable {
  private readonly byId = new Map<number, Node>();
  private readonly byName = new Map<string, Node>();
  private readonly byInode = new Map<string, Node>();
  private nextId = ROOT_ID + 1;
  readonly root: Node;

  /** `dropped` hears of every node the table forgets (its directory handle can then close). */
  constructor(
    rootDir?: Directory,
    private readonly dropped: (node: Node) => void = () => undefined,
  ) {
    this.root = { id: ROOT_ID, inode: "", names: [], lookups: 1, dir: rootDir };
    this.byId.set(ROOT_ID, this.root);
  }

  get size(): number {
    return this.byId.size;
  }

  /** The node with this ID; ESTALE if the kernel names one it has forgotten. */
  get(id: number): Node {
    const node = this.byId.get(id);
    if (!node) throw new FsError("ESTALE");
    return node;
  }

  /** Cleartext path of a node through the first of its names that still leads to the root; ENOENT if none does. */
  path(node: Node): string {
    if (node === this.root) return "/";
    for (const { parent, name } of node.names) {
      const base = this.tryPath(parent);
      if (base !== undefined) return base === "/" ? "/" + name : base + "/" + name;
    }
    throw new FsError("ENOENT");
  }

  private tryPath(node: Node): string | undefined {
    try {
      return this.path(node);
    } catch {
      return undefined;
    }
  }

  childPath(parent: Node, name: string): string {
    const base = this.path(parent);
    return base === "/" ? "/" + name : base + "/" + name;
  }

  private key(parent: Node, name: string): string {
    return parent.id + "/" + name;
  }

  /** The node of `name` in `parent`, which is lower inode `inode`; counts no lookup. */
  child(parent: Node, name: string, inode: string): Node {
    const key = this.key(parent, name);
    const named = this.byName.get(key);
    if (named?.inode === inode) return named;
    // The name now leads to another inode (replaced behind our back): it leaves its old node.
    if (named) this.detach(parent, name);
    let node = this.byInode.get(inode);
    if (node) {
      node.names.push({ parent, name });
    } else {
      // An array literal of one: a push onto [] would reserve room for 17 names.
      node = { id: this.nextId++, inode, names: [{ parent, name }], lookups: 0 };
      this.byId.set(node.id, node);
      this.byInode.set(inode, node);
    }
    this.byName.set(key, node);
    return node;
  }

  /** A lookup the kernel will remember. */
  lookup(parent: Node, name: string, inode: string): Node {
    const node = this.child(parent, name, inode);
    node.lookups++;
    return node;
  }

  forget(id: number, count: number): void {
    const node = this.byId.get(id);
    if (!node || node === this.root) return;
    node.lookups = Math.max(0, node.lookups - count);
    this.dropIfUnused(node);
  }

  /** Removes a node nobody refers to (no kernel lookups, no open handles). */
  dropIfUnused(node: Node): void {
    if (node.lookups > 0 || (node.handles?.size ?? 0) > 0 || node === this.root) return;
    if (this.byId.get(node.id) !== node) return; // dropped already
    this.byId.delete(node.id);
    for (const { parent, name } of node.names) {
      const key = this.key(parent, name);
      if (this.byName.get(key) === node) this.byName.delete(key);
    }
    if (this.byInode.get(node.inode) === node) this.byInode.delete(node.inode);
    this.dropped(node);
  }

  /** The node named `name` in `parent`, if the table knows it. */
  named(parent: Node, name: string): Node | undefined {
    return this.byName.get(this.key(parent, name));
  }

  /** `name` in `parent` no longer exists; its node lives on for the kernel and open files. */
  detach(parent: Node, name: string): void {
    const key = this.key(parent, name);
    const node = this.byName.get(key);
    if (!node) return;
    this.byName.delete(key);
    const at = node.names.findIndex((n) => n.parent === parent && n.name === name);
    if (at >= 0) node.names.splice(at, 1);
    // An inode without names cannot be found by a new lookup: a reused inode number gets a new node.
    if (node.names.length === 0 && this.byInode.get(node.inode) === node)
      this.byInode.delete(node.inode);
    this.dropIfUnused(node);
  }

  move(parent: Node, name: string, newParent: Node, newName: string): void {
    if (parent === newParent && name === newName) return;
    const node = this.byName.get(this.key(parent, name));
    this.detach(newParent, newName);
    if (!node) return;
    this.byName.delete(this.key(parent, name));
    const entry = node.names.find((n) => n.parent === parent && n.name === name);
    if (entry) {
      entry.parent = newParent;
      entry.name = newName;
    } else {
      node.names.push({ parent: newParent, name: newName });
    }
    this.byName.set(this.key(newParent, newName), node);
  }

  opened(node: Node, fh: number): void {
    (node.handles ??= new Set()).add(fh);
  }

  closed(node: Node, fh: number): void {
    node.handles?.delete(fh);
    if (node.handles?.size === 0) node.handles = undefined;
    this.dropIfUnused(node);
  }
}
