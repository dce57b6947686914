/** Bad models at the model level: each a typed error with a code, before native code runs. */
import { closeSync, cpSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { totalmem } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { type ErrorCode, isOpenLoraError } from "../../src/errors.js";
import { GGML_TYPE } from "../../src/formats/ggml-types.js";
import { parseGguf } from "../../src/formats/gguf.js";
import { loadModel } from "../../src/model/load.js";
import { writeGgufModel, writeHfModel } from "../../src/synth/synthesize.js";
import { rewriteGguf } from "../helpers/rewrite-gguf.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();
const good = join(dir, "good.gguf");
const hf = join(dir, "hf");

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  let err: unknown;
  try { await p; } catch (e) { err = e; }
  expect(isOpenLoraError(err), `expected ${code}, got ${String(err)}`).toBe(true);
  expect((err as { code: string }).code).toBe(code);
}

beforeAll(() => {
  writeGgufModel(good, "tiny-llama3", { seed: 1, type: "f32" });
  writeHfModel(hf, "tiny-qwen2", { seed: 1, dtype: "F16" });
});

describe("model loading rejects bad models with typed errors", () => {
  it("loads the untouched files", async () => {
    expect((await loadModel(good, { prefault: false })).config.architecture).toBe("llama");
    expect((await loadModel(hf, { prefault: false })).config.architecture).toBe("qwen2");
  });

  it("a file larger than the machine's memory (sparse, nothing read): MODEL_FILE_TOO_LARGE", async () => {
    const p = join(dir, "huge.gguf");
    cpSync(good, p);
    truncateSync(p, Math.max(totalmem() + 2 ** 30, 2 ** 40));
    await expectCode(loadModel(p, { prefault: false }), "MODEL_FILE_TOO_LARGE");
    rmSync(p);
  });

  it("a file over 4 GiB (one Uint8Array's limit) loads, its tensors viewed past 4 GiB", async () => {
    // The tiny model's header, then a sparse gap of 4 GiB, then its tensor data: every tensor offset
    // moved up by 4 GiB in the header, so every weight is read from past the 4 GiB mark.
    const src = readFileSync(good);
    const f = parseGguf(src, good);
    const header = Buffer.from(src.subarray(0, f.dataOffset));
    const shift = 2 ** 32;
    for (const t of f.tensors) {
      const name = Buffer.from(t.name, "utf8");
      let at = -1;
      for (let from = 0; ; from = at + 1) {
        at = header.indexOf(name, from);
        expect(at).toBeGreaterThan(8);
        if (header.readBigUInt64LE(at - 8) === BigInt(name.length) && header.readUInt32LE(at + name.length) === t.dims.length) break;
      }
      const offsetAt = at + name.length + 4 + 8 * t.dims.length + 4;
      header.writeBigUInt64LE(header.readBigUInt64LE(offsetAt) + BigInt(shift), offsetAt);
    }
    const p = join(dir, "past4g.gguf");
    const fd = openSync(p, "w");
    writeSync(fd, header, 0, header.length, 0);
    writeSync(fd, src, f.dataOffset, src.length - f.dataOffset, f.dataOffset + shift);
    closeSync(fd);
    const m = await loadModel(p, { prefault: false });
    const ref = await loadModel(good, { prefault: false });
    expect(m.config).toEqual(ref.config);
    const wq = m.model.weights.layers[1]!.wq.data;
    expect(wq.byteOffset).toBeGreaterThan(shift);
    expect(Buffer.compare(Buffer.from(wq.buffer, wq.byteOffset, wq.byteLength), Buffer.from(ref.model.weights.layers[1]!.wq.data))).toBe(0);
    expect(Buffer.compare(Buffer.from(m.model.weights.output.data), Buffer.from(ref.model.weights.output.data))).toBe(0);
    rmSync(p);
  }, 120_000);

  it("a missing path", async () => {
    await expectCode(loadModel(join(dir, "nope.gguf")), "MODEL_NOT_FOUND");
  });

  it("an unsupported architecture", async () => {
    const p = join(dir, "arch.gguf");
    rewriteGguf(good, p, { meta: (m) => { m["general.architecture"] = { type: "string", value: "gpt-neox" }; } });
    await expectCode(loadModel(p), "MODEL_UNSUPPORTED_ARCHITECTURE");
  });

  it("a missing tensor", async () => {
    const p = join(dir, "missing.gguf");
    rewriteGguf(good, p, { tensors: (t) => t.filter((x) => x.name !== "blk.1.ffn_down.weight") });
    await expectCode(loadModel(p), "MODEL_MISSING_TENSOR");
  });

  it("a mis-shaped tensor", async () => {
    const p = join(dir, "shape.gguf");
    rewriteGguf(good, p, { tensors: (t) => t.map((x) => x.name === "blk.0.attn_k.weight" ? { ...x, dims: [64, 16], data: (x.data as Uint8Array).subarray(0, 64 * 16 * 4) } : x) });
    await expectCode(loadModel(p), "MODEL_TENSOR_SHAPE_MISMATCH");
  });

  it("a known but unsupported tensor type (Q4_1; likewise Q2_K, Q3_K, Q5_K)", async () => {
    const p = join(dir, "q41.gguf");
    rewriteGguf(good, p, { tensors: (t) => t.map((x) => x.name === "blk.0.ffn_up.weight" ? { ...x, type: GGML_TYPE.Q4_1, data: new Uint8Array(20 * 2 * 128) } : x) });
    await expectCode(loadModel(p), "MODEL_UNSUPPORTED_TENSOR_TYPE");
  });

  it("inconsistent hyper-parameters", async () => {
    const p = join(dir, "heads.gguf");
    rewriteGguf(good, p, { meta: (m) => { m["llama.attention.head_count_kv"] = { type: "u32", value: 3 }; } });
    await expectCode(loadModel(p), "MODEL_CONFIG_INVALID");
    const p2 = join(dir, "nolayers.gguf");
    rewriteGguf(good, p2, { meta: (m) => { delete m["llama.block_count"]; } });
    await expectCode(loadModel(p2), "MODEL_METADATA_INVALID");
  });

  it("a GGUF file without a tokenizer", async () => {
    const p = join(dir, "notok.gguf");
    rewriteGguf(good, p, { meta: (m) => { for (const k of Object.keys(m)) if (k.startsWith("tokenizer.")) delete m[k]; } });
    await expectCode(loadModel(p), "TOKENIZER_MISSING");
  });

  it("a Hugging Face folder without tokenizer.json, config.json, or weights", async () => {
    const noTok = join(dir, "hf-notok");
    cpSync(hf, noTok, { recursive: true });
    rmSync(join(noTok, "tokenizer.json"));
    await expectCode(loadModel(noTok), "TOKENIZER_MISSING");
    const noCfg = join(dir, "hf-nocfg");
    cpSync(hf, noCfg, { recursive: true });
    rmSync(join(noCfg, "config.json"));
    await expectCode(loadModel(noCfg), "MODEL_CONFIG_INVALID");
    const badCfg = join(dir, "hf-badcfg");
    cpSync(hf, badCfg, { recursive: true });
    writeFileSync(join(badCfg, "config.json"), "{ not json");
    await expectCode(loadModel(badCfg), "MODEL_CONFIG_INVALID");
    const noWeights = join(dir, "hf-noweights");
    cpSync(hf, noWeights, { recursive: true });
    rmSync(join(noWeights, "model.safetensors"));
    await expectCode(loadModel(noWeights), "MODEL_NOT_FOUND");
  });

  it("a safetensors file that lies about its header length", async () => {
    const lying = join(dir, "hf-lying");
    cpSync(hf, lying, { recursive: true });
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(1n << 40n);
    const { openSync, writeSync, closeSync } = await import("node:fs");
    const fd = openSync(join(lying, "model.safetensors"), "r+");
    writeSync(fd, len, 0, 8, 0);
    closeSync(fd);
    await expectCode(loadModel(lying), "SAFETENSORS_HEADER_INVALID");
  });
});
