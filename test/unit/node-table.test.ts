import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FsError } from "../../src/fs/errors.js";
import { NodeTable, ROOT_ID } from "../../src/fs/fuse3/node-table.js";

const errnoOf = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (err) {
    return (err as FsError).errno;
  }
};

describe("NodeTable", () => {
  it("gives each name one node and builds paths from the root", () => {
    const t = new NodeTable();
    const a = t.lookup(t.root, "a", "1:10");
    const b = t.lookup(a, "b", "1:11");
    expect(t.lookup(t.root, "a", "1:10")).toBe(a);
    expect(a.lookups).toBe(2);
    expect(t.path(t.root)).toBe("/");
    expect(t.path(b)).toBe("/a/b");
    expect(t.childPath(b, "c")).toBe("/a/b/c");
    expect(t.childPath(t.root, "c")).toBe("/c");
    expect(t.get(ROOT_ID)).toBe(t.root);
  });

  it("never reuses an ID and answers ESTALE for a forgotten one", () => {
    const t = new NodeTable();
    const a = t.lookup(t.root, "a", "1:10");
    t.forget(a.id, 1);
    expect(errnoOf(() => t.get(a.id))).toBe("ESTALE");
    const again = t.lookup(t.root, "a", "1:10");
    expect(again.id).toBeGreaterThan(a.id);
  });

  it("keeps an unlinked node for its open handles, without a path", () => {
    const t = new NodeTable();
    const f = t.lookup(t.root, "f", "1:20");
    t.opened(f, 7);
    t.forget(f.id, 1);
    expect(t.get(f.id)).toBe(f); // still open
    t.detach(t.root, "f");
    expect(errnoOf(() => t.path(f))).toBe("ENOENT");
    const fresh = t.lookup(t.root, "f", "1:20"); // even if the inode number was reused
    expect(fresh).not.toBe(f);
    t.closed(f, 7);
    expect(errnoOf(() => t.get(f.id))).toBe("ESTALE");
    expect(t.get(fresh.id)).toBe(fresh);
  });

  it("rename moves a node with its subtree and detaches the replaced target", () => {
    const t = new NodeTable();
    const d = t.lookup(t.root, "d", "1:30");
    const x = t.lookup(d, "x", "1:31");
    const target = t.lookup(t.root, "e", "1:32");
    t.move(t.root, "d", t.root, "e");
    expect(t.path(x)).toBe("/e/x");
    expect(errnoOf(() => t.path(target))).toBe("ENOENT");
    expect(t.lookup(t.root, "e", "1:30")).toBe(d);
    t.move(t.root, "e", t.root, "e");
    expect(t.path(d)).toBe("/e");
  });

  it("a detached directory takes the paths of its children with it", () => {
    const t = new NodeTable();
    const d = t.lookup(t.root, "d", "1:40");
    const x = t.lookup(d, "x", "1:41");
    t.detach(t.root, "d");
    expect(errnoOf(() => t.path(x))).toBe("ENOENT");
  });

  it("children counted by no lookup disappear when dropped", () => {
    const t = new NodeTable();
    const before = t.size;
    const c = t.child(t.root, "c", "1:50");
    t.dropIfUnused(c);
    expect(t.size).toBe(before);
  });

  it("hard links share one node; it keeps a path while any name is left", () => {
    const t = new NodeTable();
    const d = t.lookup(t.root, "d", "1:60");
    const one = t.lookup(t.root, "one", "1:61");
    const two = t.lookup(d, "two", "1:61");
    expect(two).toBe(one);
    expect(one.lookups).toBe(2);
    expect(t.path(one)).toBe("/one");
    t.detach(t.root, "one");
    expect(t.path(one)).toBe("/d/two");
    t.move(d, "two", t.root, "three");
    expect(t.path(one)).toBe("/three");
    t.detach(t.root, "three");
    expect(errnoOf(() => t.path(one))).toBe("ENOENT");
    // A new file that happens to get the same inode number is a new node.
    expect(t.lookup(t.root, "new", "1:61")).not.toBe(one);
  });

  it("a name that now leads to another inode leaves its old node", () => {
    const t = new NodeTable();
    const old = t.lookup(t.root, "f", "1:70");
    const replaced = t.lookup(t.root, "f", "1:71");
    expect(replaced).not.toBe(old);
    expect(errnoOf(() => t.path(old))).toBe("ENOENT");
    expect(t.path(replaced)).toBe("/f");
  });

  it("random lookups, forgets, renames and unlinks keep the table consistent", () => {
    type Step =
      | { kind: "lookup"; name: string }
      | { kind: "forget"; name: string }
      | { kind: "rename"; from: string; to: string }
      | { kind: "unlink"; name: string };
    const name = fc.constantFrom("a", "b", "c");
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.record({ kind: fc.constant("lookup" as const), name }),
      fc.record({ kind: fc.constant("forget" as const), name }),
      fc.record({ kind: fc.constant("rename" as const), from: name, to: name }),
      fc.record({ kind: fc.constant("unlink" as const), name }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const t = new NodeTable();
        // The kernel's view: name -> node id and how often it was told of it.
        const kernel = new Map<string, { id: number; count: number }>();
        // The lower directory: name -> inode; every new file gets a fresh inode.
        const inodes = new Map<string, string>();
        let lastInode = 100;
        const newInode = (n: string) => {
          const inode = `1:${++lastInode}`;
          inodes.set(n, inode);
          return inode;
        };
        for (const s of steps) {
          if (s.kind === "lookup") {
            const node = t.lookup(t.root, s.name, inodes.get(s.name) ?? newInode(s.name));
            const known = kernel.get(s.name);
            if (known && known.id === node.id) known.count++;
            else kernel.set(s.name, { id: node.id, count: 1 });
          } else if (s.kind === "forget") {
            const known = kernel.get(s.name);
            if (known) {
              t.forget(known.id, known.count);
              kernel.delete(s.name);
            }
          } else if (s.kind === "rename") {
            t.move(t.root, s.from, t.root, s.to);
            if (s.from !== s.to) {
              const inode = inodes.get(s.from);
              inodes.delete(s.from);
              inodes.delete(s.to);
              if (inode) inodes.set(s.to, inode);
              const moved = kernel.get(s.from);
              kernel.delete(s.from);
              kernel.delete(s.to);
              if (moved) kernel.set(s.to, moved);
            }
          } else {
            t.detach(t.root, s.name);
            kernel.delete(s.name);
            inodes.delete(s.name);
          }
          for (const [n, { id }] of kernel) {
            expect(t.path(t.get(id))).toBe("/" + n);
          }
        }
      }),
    );
  });
});
