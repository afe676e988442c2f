import { FsError } from "../errors.js";

/** A name the kernel knows, by the node ID it was given for it. */
export interface Node {
  readonly id: number;
  parent: Node | undefined;
  name: string;
  /** How many times the kernel was told of this node (it forgets as many). */
  lookups: number;
  /** Unlinked, or replaced by a rename: its name now means something else or nothing. */
  detached: boolean;
  /** Open file handles on it, so an unlinked but open file keeps its attributes. */
  readonly handles: Set<number>;
}

export const ROOT_ID = 1;

/**
 * Node IDs of the low-level FUSE API over a path-based filesystem: one node
 * per name (as libfuse's high-level API does), IDs never reused, lookups
 * counted so a node lives exactly as long as the kernel and open files need it.
 */
export class NodeTable {
  private readonly byId = new Map<number, Node>();
  private readonly byName = new Map<string, Node>();
  private nextId = ROOT_ID + 1;
  readonly root: Node = {
    id: ROOT_ID,
    parent: undefined,
    name: "",
    lookups: 1,
    detached: false,
    handles: new Set(),
  };

  constructor() {
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

  /** Cleartext path of a node; ENOENT if it or an ancestor is detached. */
  path(node: Node): string {
    if (node === this.root) return "/";
    const parts: string[] = [];
    for (let n: Node | undefined = node; n && n !== this.root; n = n.parent) {
      if (n.detached) throw new FsError("ENOENT");
      parts.push(n.name);
    }
    return "/" + parts.reverse().join("/");
  }

  childPath(parent: Node, name: string): string {
    const base = this.path(parent);
    return base === "/" ? "/" + name : base + "/" + name;
  }

  private key(parent: Node, name: string): string {
    return parent.id + "/" + name;
  }

  /** The node of `name` in `parent`, created if new; counts no lookup. */
  child(parent: Node, name: string): Node {
    const key = this.key(parent, name);
    let node = this.byName.get(key);
    if (!node) {
      node = {
        id: this.nextId++,
        parent,
        name,
        lookups: 0,
        detached: false,
        handles: new Set(),
      };
      this.byName.set(key, node);
      this.byId.set(node.id, node);
    }
    return node;
  }

  /** A lookup the kernel will remember. */
  lookup(parent: Node, name: string): Node {
    const node = this.child(parent, name);
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
    if (node.lookups > 0 || node.handles.size > 0 || node === this.root) return;
    this.byId.delete(node.id);
    if (!node.detached && node.parent) {
      const key = this.key(node.parent, node.name);
      if (this.byName.get(key) === node) this.byName.delete(key);
    }
  }

  /** `name` in `parent` no longer exists: its node keeps living for open files and the kernel. */
  detach(parent: Node, name: string): void {
    const key = this.key(parent, name);
    const node = this.byName.get(key);
    if (!node) return;
    this.byName.delete(key);
    node.detached = true;
    this.dropIfUnused(node);
  }

  move(parent: Node, name: string, newParent: Node, newName: string): void {
    const node = this.byName.get(this.key(parent, name));
    if (node && parent === newParent && name === newName) return;
    this.detach(newParent, newName);
    if (!node) return;
    this.byName.delete(this.key(parent, name));
    node.parent = newParent;
    node.name = newName;
    this.byName.set(this.key(newParent, newName), node);
  }

  opened(node: Node, fh: number): void {
    node.handles.add(fh);
  }

  closed(node: Node, fh: number): void {
    node.handles.delete(fh);
    this.dropIfUnused(node);
  }
}
