/**
 * The hostile-adapter corpus (test/helpers/hostile-adapters.ts) at the reader and registry levels:
 * every entry is refused with its code, the scan skips what resolves outside the adapters folder,
 * and no error message carries the secret file's line or a long quote of a file's contents.
 */
import { mkdirSync, renameSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { AdapterCache } from "../../src/adapters/cache.js";
import { readGgufLora } from "../../src/adapters/formats/gguf-lora.js";
import { readPeftAdapter } from "../../src/adapters/formats/peft.js";
import { createAdapterLoader } from "../../src/adapters/loader.js";
import { AdapterRegistry } from "../../src/adapters/registry.js";
import type { BaseModelShape } from "../../src/adapters/types.js";
import { isOpenLoraError } from "../../src/errors.js";
import { assertHarmlessMessage, type HostileAdapter, writeHostileCorpus } from "../helpers/hostile-adapters.js";
import { tempDir } from "../helpers/tmp.js";
import { presetShape } from "./formats/helpers.js";
import { writeGgufLora, writePeftAdapter } from "../../src/synth/adapters.js";

const dir = tempDir("openlora-hostile-");
const adaptersDir = join(dir, "adapters");
const outsideDir = join(dir, "outside");
let corpus: HostileAdapter[];
let base: BaseModelShape;

beforeAll(() => {
  corpus = writeHostileCorpus(adaptersDir, outsideDir);
  base = presetShape(dir, "tiny-llama3");
});

function read(a: HostileAdapter, root: string | undefined): unknown {
  const opts = { maxRank: 16, ...(root !== undefined ? { root } : {}) };
  try {
    return a.format === "peft" ? readPeftAdapter(a.path!, a.name, base, opts) : readGgufLora(a.path!, a.name, base, opts);
  } catch (e) {
    return e;
  }
}

describe("the hostile-adapter corpus", () => {
  it("covers values, scales, NaN/Inf, symlinks out, garbage strings, in both formats", () => {
    expect(corpus.length).toBeGreaterThanOrEqual(20);
    expect(new Set(corpus.map((a) => a.format))).toEqual(new Set(["peft", "gguf"]));
    expect(new Set(corpus.map((a) => a.name)).size).toBe(corpus.length);
  });

  it("each entry is refused by its reader (given the adapters folder as root) with its code, harmlessly", () => {
    for (const a of corpus) {
      const e = read(a, adaptersDir);
      expect(isOpenLoraError(e), `${a.name}: ${String(e)}`).toBe(true);
      expect((e as { code: string }).code, `${a.name}: ${String(e)}`).toBe(a.code);
      assertHarmlessMessage((e as Error).message);
      expect(JSON.stringify((e as { details?: unknown }).details ?? {}).length, a.name).toBeLessThan(600);
    }
  });

  it("read with no root (a path a local user named), the secret is still never quoted", () => {
    for (const a of corpus) {
      const e = read(a, undefined);
      if (e instanceof Error) assertHarmlessMessage(e.message);
    }
    const secret = corpus.find((a) => a.name === "peft-config-symlink-secret")!;
    expect(read(secret, undefined)).toMatchObject({ code: "ADAPTER_INVALID" });
  });

  it("the scan skips what resolves outside, registers the rest with the folder as root, and every load fails with the reader's code", async () => {
    const registry = new AdapterRegistry();
    const scan = await registry.scanDirectory(adaptersDir);
    for (const a of corpus) {
      if (a.scan === "skipped") {
        expect(scan.skipped, a.name).toContainEqual({ name: a.format === "gguf" ? `${a.name}.gguf` : a.name, reason: a.skipReason });
        expect(registry.has(a.name), a.name).toBe(false);
      } else {
        expect(registry.get(a.name)?.source.root, a.name).toBe(scan.root);
      }
    }
    const cache = new AdapterCache({ registry, loader: createAdapterLoader(base, { maxRank: 16 }), budgetBytes: 1 << 30 });
    for (const a of corpus.filter((x) => x.scan === "registered")) {
      const e = await cache.acquire(a.name).then(() => undefined, (err: unknown) => err);
      expect(e, a.name).toMatchObject({ code: "ADAPTER_LOAD_FAILED", details: { causeCode: a.code } });
      assertHarmlessMessage((e as Error).message);
    }
  });

  it("symlinks that stay inside the adapters folder are followed: scanned, loaded, hashed like the files", async () => {
    const root = join(dir, "inside");
    mkdirSync(join(root, "store"), { recursive: true });
    const real = writePeftAdapter(join(root, "store", "real"), "tiny-llama3", { seed: 4, rank: 4, alpha: 8, targets: ["q"], dtype: "F16" });
    symlinkSync(real, join(root, "linked-folder"));
    const files = writePeftAdapter(join(root, "linked-files"), "tiny-llama3", { seed: 5, rank: 4, alpha: 8, targets: ["v"], dtype: "F32" });
    for (const f of ["adapter_config.json", "adapter_model.safetensors"]) {
      renameSync(join(files, f), join(root, "store", `${f}.5`));
      symlinkSync(join(root, "store", `${f}.5`), join(files, f));
    }
    writeGgufLora(join(root, "store", "g.gguf.real"), "tiny-llama3", { seed: 6, rank: 4, alpha: 8, targets: ["q"], type: "f16" });
    symlinkSync(join(root, "store", "g.gguf.real"), join(root, "linked.gguf"));
    const registry = new AdapterRegistry();
    const scan = await registry.scanDirectory(root);
    expect(scan.skipped).toEqual([{ name: "store", reason: "not-an-adapter" }]);
    const cache = new AdapterCache({ registry, loader: createAdapterLoader(base, { maxRank: 16 }), budgetBytes: 1 << 30 });
    for (const id of ["linked-folder", "linked-files", "linked"]) {
      const lease = await cache.acquire(id);
      expect(lease.adapter.contentHash, id).toMatch(/^0x[0-9a-f]{64}$/);
      lease.release();
    }
  });
});
