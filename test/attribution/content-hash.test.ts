import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { contentHash, fileSha256 } from "../../src/attribution/content-hash.js";

const dir = mkdtempSync(join(tmpdir(), "openlora-content-hash-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha = (...parts: Buffer[]): Buffer => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
};

function file(name: string, bytes: Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

describe("content hashes", () => {
  it("hashes files shorter than, equal to and longer than one read chunk (1 MiB)", async () => {
    for (const n of [0, 1, 1 << 20, (1 << 20) + 1, 2.5 * (1 << 20)]) {
      const bytes = randomBytes(n);
      const p = file(`f${n}.bin`, bytes);
      expect((await fileSha256(p)).equals(sha(bytes))).toBe(true);
      expect(await contentHash(p)).toBe(`0x${sha(bytes).toString("hex")}`);
    }
  });

  it("keeps concurrent hashes apart while read buffers are reused", async () => {
    // More files at once than buffers kept for reuse, each over a chunk, twice in a row.
    const files = Array.from({ length: 7 }, (_, i) => {
      const bytes = randomBytes((1 << 20) + 4096 * (i + 1));
      return { path: file(`c${i}.bin`, bytes), hash: sha(bytes) };
    });
    for (let round = 0; round < 2; round++) {
      const got = await Promise.all(files.map((f) => fileSha256(f.path)));
      got.forEach((h, i) => expect(h.equals(files[i]!.hash)).toBe(true));
    }
  });

  it("hashes a PEFT folder over its config then its weights", async () => {
    const peft = join(dir, "peft");
    mkdirSync(peft);
    const cfg = Buffer.from('{"r": 8}');
    const weights = randomBytes(3000);
    writeFileSync(join(peft, "adapter_config.json"), cfg);
    writeFileSync(join(peft, "adapter_model.safetensors"), weights);
    expect(await contentHash(peft)).toBe(`0x${sha(sha(cfg), sha(weights)).toString("hex")}`);
  });

  it("names a missing path MODEL_NOT_FOUND", async () => {
    await expect(contentHash(join(dir, "absent.gguf"))).rejects.toMatchObject({ code: "MODEL_NOT_FOUND" });
  });
});
