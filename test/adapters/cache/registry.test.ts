import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AdapterRegistry, isPlainId } from "../../../src/adapters/registry.js";
import { tempDir } from "../../helpers/tmp.js";

const codeOfSync = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code ?? "no-code";
  }
};

describe("isPlainId and register", () => {
  it("accepts plain names and rejects paths, traversal and oddities", () => {
    for (const ok of ["a", "A9", "my-adapter_v1.2", "x".repeat(128), "a.b.c", "0"]) expect(isPlainId(ok)).toBe(true);
    for (const bad of [
      "", ".", "..", "../x", "a/../b", "a..b", "a/b", "a\\b", "/etc/passwd", "C:\\x", ".hidden", "-flag", "_x",
      "x".repeat(129), "a b", "a\0b", "é", "%2e%2e", "a:b", "~root",
    ]) {
      expect(isPlainId(bad), bad).toBe(false);
    }
    expect(isPlainId(42)).toBe(false);
    expect(isPlainId(undefined)).toBe(false);
  });

  it("register / unregister / get / list / size with their error codes", () => {
    const r = new AdapterRegistry({ now: () => 7 });
    const e = r.register("b", { format: "gguf", path: "/x/b.gguf" });
    expect(e).toEqual({ id: "b", source: { format: "gguf", path: "/x/b.gguf" }, registeredAt: 7 });
    r.register("a", { format: "peft", path: "/x/a" }, { pinned: true });
    expect(r.get("a")?.pinned).toBe(true);
    expect(r.list().map((x) => x.id)).toEqual(["a", "b"]);
    expect(r.size).toBe(2);
    expect(codeOfSync(() => r.register("a", { format: "peft", path: "/y" }))).toBe("ADAPTER_ALREADY_EXISTS");
    expect(codeOfSync(() => r.register("../a", { format: "peft", path: "/y" }))).toBe("ADAPTER_ID_INVALID");
    expect(codeOfSync(() => r.register("c", { format: "onnx" as never, path: "/y" }))).toBe("INVALID_ARGUMENT");
    expect(codeOfSync(() => r.register("c", { format: "peft", path: "" }))).toBe("INVALID_ARGUMENT");
    const removed: string[] = [];
    r.onRemove((x) => removed.push(x.id));
    r.unregister("a");
    expect(removed).toEqual(["a"]);
    expect(codeOfSync(() => r.unregister("a"))).toBe("ADAPTER_NOT_FOUND");
    expect(r.list().map((x) => x.id)).toEqual(["b"]);
    expect(r.get("a")).toBeUndefined();
  });
});

describe("scanDirectory", () => {
  it("finds PEFT folders and GGUF files, skipping the rest with reasons", async () => {
    const root = tempDir("openlora-scan-");
    const outside = tempDir("openlora-outside-");
    mkdirSync(join(root, "peft-a"));
    writeFileSync(join(root, "peft-a", "adapter_config.json"), "");
    mkdirSync(join(root, "no-config"));
    writeFileSync(join(root, "lora-b.gguf"), "");
    writeFileSync(join(root, "UPPER.GGUF"), "");
    writeFileSync(join(root, "notes.txt"), "");
    writeFileSync(join(root, ".DS_Store"), "");
    writeFileSync(join(root, "bad name.gguf"), "");
    writeFileSync(join(root, "-x.gguf"), "");
    // A clash: folder "dup" and file "dup.gguf" both want id "dup"; the sorted-first one wins.
    mkdirSync(join(root, "dup"));
    writeFileSync(join(root, "dup", "adapter_config.json"), "");
    writeFileSync(join(root, "dup.gguf"), "");
    // Symlinks: one inside the root (followed), two escaping it, one broken.
    symlinkSync(join(root, "peft-a"), join(root, "alias"));
    mkdirSync(join(outside, "evil"));
    writeFileSync(join(outside, "evil", "adapter_config.json"), "");
    symlinkSync(join(outside, "evil"), join(root, "evil"));
    writeFileSync(join(outside, "x.gguf"), "");
    symlinkSync(join(outside, "x.gguf"), join(root, "escape.gguf"));
    symlinkSync(join(root, "..", "..", "etc"), join(root, "dotdot"));
    symlinkSync(join(root, "missing"), join(root, "broken.gguf"));

    const r = new AdapterRegistry();
    const res = await r.scanDirectory(root);
    expect(r.list().map((e) => [e.id, e.source.format])).toEqual([
      ["UPPER", "gguf"],
      ["alias", "peft"],
      ["dup", "peft"],
      ["lora-b", "gguf"],
      ["peft-a", "peft"],
    ]);
    expect(res).toMatchObject({ added: 5, peft: 3, gguf: 2, unchanged: 0 });
    const reasons = Object.fromEntries(res.skipped.map((s) => [s.name, s.reason]));
    expect(reasons).toEqual({
      "-x.gguf": "invalid-id",
      "bad name.gguf": "invalid-id",
      "broken.gguf": "broken-symlink",
      dotdot: "symlink-escapes-root",
      "dup.gguf": "duplicate",
      "escape.gguf": "symlink-escapes-root",
      evil: "symlink-escapes-root",
      "no-config": "not-an-adapter",
      "notes.txt": "not-an-adapter",
    });
    expect(r.get("peft-a")!.source.path.endsWith("peft-a")).toBe(true);

    // A rescan changes nothing.
    const again = await r.scanDirectory(root);
    expect(again).toMatchObject({ added: 0, unchanged: 5 });
    expect(r.size).toBe(5);
  });

  it("a missing root is INVALID_ARGUMENT", async () => {
    const r = new AdapterRegistry();
    await expect(r.scanDirectory("/definitely/not/here")).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  // Scan speed is measured in bench/adapter-cache.ts, not asserted here (timed tests flake on a shared machine).
  it("registers 10,000 entries from one scan (the files are empty: nothing is loaded)", async () => {
    const root = tempDir("openlora-scan10k-");
    for (let i = 0; i < 5000; i++) {
      const d = join(root, `peft-${i}`);
      mkdirSync(d);
      writeFileSync(join(d, "adapter_config.json"), "");
      writeFileSync(join(root, `gguf-${i}.gguf`), "");
    }
    const r = new AdapterRegistry();
    const res = await r.scanDirectory(root);
    expect(res).toMatchObject({ added: 10_000, peft: 5000, gguf: 5000, skipped: [] });
    expect(r.size).toBe(10_000);
    expect(r.list()).toHaveLength(10_000);
    expect(r.list()[0]!.id).toBe("gguf-0");
  });
});
