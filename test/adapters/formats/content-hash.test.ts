/**
 * An adapter's contentHash is computed by its reader from the bytes it parsed and equals the rule of
 * src/attribution/content-hash.ts applied to its path (GGUF LoRA: the file; PEFT: the two files),
 * for every stored type, through the sync readers and the engine's async ones alike; changing a byte
 * of either file changes it.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { contentHash } from "../../../src/attribution/content-hash.js";
import { loadGgufLora, readGgufLora } from "../../../src/adapters/formats/gguf-lora.js";
import { loadPeftAdapter, readPeftAdapter } from "../../../src/adapters/formats/peft.js";
import { writeGgufLora, writePeftAdapter } from "../../../src/synth/adapters.js";
import { tempDir } from "../../helpers/tmp.js";
import { presetShape } from "./helpers.js";

const dir = tempDir("openlora-adapter-hash-");
const opts = { seed: 8, rank: 4, alpha: 8, targets: ["q" as const, "v" as const] };
const max = { maxRank: 16 };

describe("adapter content hash", () => {
  for (const dtype of ["F32", "F16", "BF16"] as const) {
    it(`PEFT ${dtype}: SHA-256(SHA-256(config) ‖ SHA-256(weights)), as contentHash(path)`, async () => {
      const base = presetShape(dir, "tiny-llama3");
      const p = writePeftAdapter(join(dir, `peft-${dtype}`), "tiny-llama3", { ...opts, dtype });
      const a = readPeftAdapter(p, "a", base, max);
      expect(a.contentHash).toMatch(/^0x[0-9a-f]{64}$/);
      expect(a.contentHash).toBe(await contentHash(p));
      // The engine's loader hashes on the thread pool: the same adapter, the same hash.
      expect(await loadPeftAdapter(p, "a", base, max)).toEqual(a);
      const cfg = join(p, "adapter_config.json");
      writeFileSync(cfg, `${readFileSync(cfg, "utf8")} `);
      const b = readPeftAdapter(p, "a", base, max);
      expect(b.contentHash).not.toBe(a.contentHash);
      expect(b.contentHash).toBe(await contentHash(p));
    });
  }

  for (const type of ["f32", "f16", "q8_0"] as const) {
    it(`GGUF ${type}: the SHA-256 of the file, as contentHash(path)`, async () => {
      const base = presetShape(dir, "tiny-llama3");
      const p = writeGgufLora(join(dir, `g-${type}.gguf`), "tiny-llama3", { ...opts, rank: 32, type });
      const a = readGgufLora(p, "a", base, { maxRank: 32 });
      expect(a.contentHash).toBe(await contentHash(p));
      expect(await loadGgufLora(p, "a", base, { maxRank: 32 })).toEqual(a);
      const bytes = readFileSync(p);
      bytes[bytes.length - 1] ^= 1;
      writeFileSync(p, bytes);
      const b = readGgufLora(p, "a", base, { maxRank: 32 });
      expect(b.contentHash).not.toBe(a.contentHash);
      expect(b.contentHash).toBe(await contentHash(p));
    });
  }
});
