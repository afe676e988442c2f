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
    const a = t.lookup(t.root, "a");
    const b = t.lookup(a, "b");
    expect(t.lookup(t.root, "a")).toBe(a);
    expect(a.lookups).toBe(2);
    expect(t.path(t.root)).toBe("/");
    expect(t.path(b)).toBe("/a/b");
    expect(t.childPath(b, "c")).toBe("/a/b/c");
    expect(t.childPath(t.root, "c")).toBe("/c");
    expect(t.get(ROOT_ID)).toBe(t.root);
  });

  it("never reuses an ID and answers ESTALE for a forgotten one", () => {
    const t = new NodeTable();
    const a = t.lookup(t.root, "a");
    t.forget(a.id, 1);
    expect(errnoOf(() => t.get(a.id))).toBe("ESTALE");
    const again = t.lookup(t.root, "a");
    expect(again.id).toBeGreaterThan(a.id);
  });

  it("keeps an unlinked node for its open handles, without a path", () => {
    const t = new NodeTable();
    const f = t.lookup(t.root, "f");
    t.opened(f, 7);
    t.forget(f.id, 1);
    expect(t.get(f.id)).toBe(f); // still open
    t.detach(t.root, "f");
    expect(errnoOf(() => t.path(f))).toBe("ENOENT");
    const fresh = t.lookup(t.root, "f");
    expect(fresh).not.toBe(f);
    t.closed(f, 7);
    expect(errnoOf(() => t.get(f.id))).toBe("ESTALE");
    expect(t.get(fresh.id)).toBe(fresh);
  });

  it("rename moves a node with its subtree and detaches the replaced target", () => {
    const t = new NodeTable();
    const d = t.lookup(t.root, "d");
    const x = t.lookup(d, "x");
    const target = t.lookup(t.root, "e");
    t.move(t.root, "d", t.root, "e");
    expect(t.path(x)).toBe("/e/x");
    expect(errnoOf(() => t.path(target))).toBe("ENOENT");
    expect(t.lookup(t.root, "e")).toBe(d);
    t.move(t.root, "e", t.root, "e");
    expect(t.path(d)).toBe("/e");
  });

  it("a detached directory takes the paths of its children with it", () => {
    const t = new NodeTable();
    const d = t.lookup(t.root, "d");
    const x = t.lookup(d, "x");
    t.detach(t.root, "d");
    expect(errnoOf(() => t.path(x))).toBe("ENOENT");
  });

  it("children counted by no lookup disappear when dropped", () => {
    const t = new NodeTable();
    const before = t.size;
    const c = t.child(t.root, "c");
    t.dropIfUnused(c);
    expect(t.size).toBe(before);
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
        for (const s of steps) {
          if (s.kind === "lookup") {
            const node = t.lookup(t.root, s.name);
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
              const moved = kernel.get(s.from);
              kernel.delete(s.from);
              kernel.delete(s.to);
              if (moved) kernel.set(s.to, moved);
            }
          } else {
            t.detach(t.root, s.name);
            kernel.delete(s.name);
          }
          for (const [n, { id }] of kernel) {
            expect(t.path(t.get(id))).toBe("/" + n);
          }
        }
      }),
    );
  });
});
