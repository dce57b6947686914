/**
 * A corpus of hostile LoRA adapters, for tests at every level (readers, registry, engine, the
 * spawned server). Plain exported API:
 *
 *   hostileAdapters(preset?)       the corpus: HostileAdapter[] for a synthetic preset's shapes
 *                                  (default "tiny-llama3"); nothing is written yet.
 *   writeHostileCorpus(adaptersDir, outsideDir, preset?)
 *                                  writes every entry (adaptersDir is the folder served; outsideDir
 *                                  must lie outside it: the secret file and symlink targets go
 *                                  there) and returns the corpus, each entry with `path` set.
 *   SECRET_LINE                    the first line of the secret file outside; no error message may
 *                                  contain it.
 *   GARBAGE                        the 100 KB string some entries carry; no error message may
 *                                  quote more than MAX_QUOTED_CHARS (64) of it.
 *   assertHarmlessMessage(msg)     throws unless msg holds neither the secret nor a long quote.
 *
 * Each entry says how it must be refused: `code` when its files are read (a reader, a cache load's
 * causeCode, a runtime load_lora_adapter), and `scan`: whether the registry's directory scan
 * already skips it ("skipped", with `skipReason`) or registers it ("registered") so that loading
 * fails. `runtimeCode` is the code of a runtime load of the entry's path relative to adaptersDir
 * (resolveInside refuses symlinks out before any file is opened).
 */
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ErrorCode } from "../../src/errors.js";
import { GGML_TYPE } from "../../src/formats/ggml-types.js";
import { type GgufEntry, type GgufTensorSpec, writeGguf } from "../../src/formats/gguf-writer.js";
import { type SafetensorsDtype, writeSafetensors } from "../../src/formats/safetensors.js";
import { writeGgufLora, writePeftAdapter } from "../../src/synth/adapters.js";
import { getPreset } from "../../src/synth/synthesize.js";
import { f32ToBf16, f32ToF16 } from "../../src/native/index.js";

export const SECRET_LINE = "root:x:0:0:QX9ZK7WV3P-do-not-leak:/var/QX9ZK7WV3P:/bin/false";
export const GARBAGE = "G".repeat(100_000);

export interface HostileAdapter {
  /** The adapter's id and its file (".gguf" added) or folder name under adaptersDir. */
  name: string;
  description: string;
  format: "peft" | "gguf";
  /** How a reader (or a cache load's causeCode) refuses it. */
  code: ErrorCode;
  /** How a runtime load of `name` (its path relative to adaptersDir) is refused. */
  runtimeCode: ErrorCode;
  scan: "registered" | "skipped";
  skipReason?: "symlink-escapes-root";
  /** Set by writeHostileCorpus: the adapter's path (folder or .gguf file). */
  path?: string;
}

interface Entry extends HostileAdapter {
  write(at: string, outsideDir: string): void;
}

/** The first line of the secret is what a naive reader's JSON error would quote. */
const SECRET_FILE = `${SECRET_LINE}\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n`;

function shapes(preset: string): { H: number; Q: number } {
  const p = getPreset(preset);
  return { H: p.hiddenSize, Q: p.nHeads * p.headDim };
}

const Q_PEFT = "base_model.model.model.layers.0.self_attn.q_proj";
const Q_GGUF = "blk.0.attn_q.weight";
const RANK = 4;

/** n copies of `value` in the dtype's bits (F16 / BF16 rounded to nearest even). */
function bitsOf(dtype: SafetensorsDtype, n: number, value: number): Uint8Array {
  if (dtype === "F32") return new Uint8Array(new Float32Array(n).fill(value).buffer);
  return new Uint8Array(new Uint16Array(n).fill(dtype === "F16" ? f32ToF16(value) : f32ToBf16(value)).buffer);
}

/** A PEFT folder with one q pair of the given dtype, every A and B value `value`. */
function peft(at: string, preset: string, dtype: SafetensorsDtype, value: number, config: Record<string, unknown> = {}): void {
  const { H, Q } = shapes(preset);
  mkdirSync(at, { recursive: true });
  writeSafetensors(join(at, "adapter_model.safetensors"), [
    { name: `${Q_PEFT}.lora_A.weight`, dtype, shape: [RANK, H], data: bitsOf(dtype, RANK * H, value) },
    { name: `${Q_PEFT}.lora_B.weight`, dtype, shape: [Q, RANK], data: bitsOf(dtype, Q * RANK, value) },
  ]);
  writeFileSync(join(at, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: RANK, lora_alpha: 8, target_modules: ["q_proj"], bias: "none", ...config }));
}

const GGUF_META: Record<string, GgufEntry> = {
  "general.architecture": { type: "string", value: "llama" }, "general.type": { type: "string", value: "adapter" },
  "adapter.type": { type: "string", value: "lora" }, "adapter.lora.alpha": { type: "f32", value: 8 },
};

type TensorFill = { type: number; data: (n: number) => Uint8Array };
const F32_SMALL: TensorFill = { type: GGML_TYPE.F32, data: (n) => bitsOf("F32", n, 0.01) };

/** A GGUF LoRA with one q pair: A and B as `a` / `b` say (default F32, every value 0.01). */
function gguf(at: string, preset: string, meta: Record<string, GgufEntry> = {}, a = F32_SMALL, b = a, names = [`${Q_GGUF}.lora_a`, `${Q_GGUF}.lora_b`]): void {
  const { H, Q } = shapes(preset);
  const specs: GgufTensorSpec[] = [
    { name: names[0]!, dims: [H, RANK], type: a.type, data: a.data(H * RANK) },
    { name: names[1]!, dims: [RANK, Q], type: b.type, data: b.data(RANK * Q) },
  ];
  writeGguf(at, { ...GGUF_META, ...meta }, specs);
}

const fill = (type: number, dtype: SafetensorsDtype, value: number): TensorFill => ({ type, data: (n) => bitsOf(dtype, n, value) });

/** Q8_0 blocks (fp16 d, 32 × int8) with d = 65504 and every q = 1: values of 65504. */
function q8HugeScales(n: number): Uint8Array {
  const out = new Uint8Array((n / 32) * 34);
  for (let b = 0; b < n / 32; b++) {
    out[b * 34] = 0xff;
    out[b * 34 + 1] = 0x7b;
    out.fill(1, b * 34 + 2, b * 34 + 34);
  }
  return out;
}

/** An outside adapter a symlink points to (valid by itself: only where it lies is wrong). */
function outsidePeft(outsideDir: string, name: string, preset: string): string {
  return writePeftAdapter(join(outsideDir, name), preset, { seed: 3, rank: RANK, alpha: 8, targets: ["q"], dtype: "F32" });
}

function entries(preset: string): Entry[] {
  const reg = { scan: "registered" as const };
  const same = (code: ErrorCode) => ({ code, runtimeCode: code });
  return [
    { name: "peft-f16-65504", format: "peft", ...reg, ...same("ADAPTER_VALUE_OUT_OF_RANGE"), description: "PEFT F16, every value 65504 (f16 max)", write: (at) => peft(at, preset, "F16", 65504) },
    { name: "peft-bf16-1e30", format: "peft", ...reg, ...same("ADAPTER_VALUE_OUT_OF_RANGE"), description: "PEFT BF16, every value ~1e30", write: (at) => peft(at, preset, "BF16", 1e30) },
    { name: "peft-f32-nan", format: "peft", ...reg, ...same("ADAPTER_NONFINITE"), description: "PEFT F32, every value NaN", write: (at) => peft(at, preset, "F32", Number.NaN) },
    { name: "peft-f16-inf", format: "peft", ...reg, ...same("ADAPTER_NONFINITE"), description: "PEFT F16, every value +Inf", write: (at) => peft(at, preset, "F16", Infinity) },
    { name: "peft-alpha-1e300", format: "peft", ...reg, ...same("ADAPTER_VALUE_OUT_OF_RANGE"), description: "lora_alpha 1e300 (scale 2.5e299)", write: (at) => peft(at, preset, "F32", 0.01, { lora_alpha: 1e300 }) },
    { name: "peft-alpha-pattern-huge", format: "peft", ...reg, ...same("ADAPTER_VALUE_OUT_OF_RANGE"), description: "alpha_pattern q_proj: 1e12", write: (at) => peft(at, preset, "F32", 0.01, { alpha_pattern: { q_proj: 1e12 } }) },
    { name: "peft-config-garbage-type", format: "peft", ...reg, ...same("ADAPTER_INVALID"), description: "a 100 KB peft_type string", write: (at) => peft(at, preset, "F32", 0.01, { peft_type: GARBAGE }) },
    { name: "peft-config-garbage-targets", format: "peft", ...reg, ...same("ADAPTER_NO_TARGETS"), description: "target_modules: [100 KB string]", write: (at) => peft(at, preset, "F32", 0.01, { target_modules: [GARBAGE] }) },
    { name: "peft-config-garbage-key", format: "peft", ...reg, ...same("ADAPTER_INVALID"), description: "rank_pattern with a 100 KB key and a bad value", write: (at) => peft(at, preset, "F32", 0.01, { rank_pattern: { [GARBAGE]: -1 } }) },
    {
      name: "peft-config-secret-text", format: "peft", ...reg, ...same("ADAPTER_INVALID"), description: "adapter_config.json holds the secret text itself (not JSON)",
      write: (at) => { peft(at, preset, "F32", 0.01); writeFileSync(join(at, "adapter_config.json"), SECRET_FILE); },
    },
    {
      name: "peft-header-secret-text", format: "peft", ...reg, ...same("SAFETENSORS_HEADER_INVALID"), description: "a safetensors header that is the secret text, not JSON",
      write: (at) => {
        peft(at, preset, "F32", 0.01);
        const text = Buffer.from(SECRET_FILE, "utf8");
        const len = Buffer.alloc(8);
        len.writeBigUInt64LE(BigInt(text.length));
        writeFileSync(join(at, "adapter_model.safetensors"), Buffer.concat([len, text]));
      },
    },
    {
      name: "peft-header-garbage-dtype", format: "peft", ...reg, ...same("MODEL_UNSUPPORTED_TENSOR_TYPE"), description: "a tensor whose dtype is a 100 KB string",
      write: (at) => {
        peft(at, preset, "F32", 0.01);
        const header = Buffer.from(JSON.stringify({ [`${Q_PEFT}.lora_A.weight`]: { dtype: GARBAGE, shape: [1], data_offsets: [0, 4] } }), "utf8");
        const len = Buffer.alloc(8);
        len.writeBigUInt64LE(BigInt(header.length));
        writeFileSync(join(at, "adapter_model.safetensors"), Buffer.concat([len, header, Buffer.alloc(4)]));
      },
    },
    {
      name: "peft-config-symlink-secret", format: "peft", scan: "skipped", skipReason: "symlink-escapes-root", ...same("ADAPTER_PATH_OUTSIDE_ROOT"),
      description: "adapter_config.json is a symlink to a secret file outside the adapters folder",
      write: (at, outside) => { peft(at, preset, "F32", 0.01); rmConfig(at); symlinkSync(join(outside, "secret.txt"), join(at, "adapter_config.json")); },
    },
    {
      name: "peft-weights-symlink-outside", format: "peft", ...reg, ...same("ADAPTER_PATH_OUTSIDE_ROOT"),
      description: "adapter_model.safetensors is a symlink to an adapter's weights outside the folder",
      write: (at, outside) => {
        peft(at, preset, "F32", 0.01);
        const target = outsidePeft(outside, "weights-target", preset);
        rmWeights(at);
        symlinkSync(join(target, "adapter_model.safetensors"), join(at, "adapter_model.safetensors"));
      },
    },
    {
      name: "peft-folder-symlink-outside", format: "peft", scan: "skipped", skipReason: "symlink-escapes-root", ...same("ADAPTER_PATH_OUTSIDE_ROOT"),
      description: "the adapter folder itself is a symlink to a folder outside",
      write: (at, outside) => symlinkSync(outsidePeft(outside, "folder-target", preset), at),
    },
    { name: "gguf-f16-65504", format: "gguf", ...reg, ...same("ADAPTER_VALUE_OUT_OF_RANGE"), description: "GGUF F16, every value 65504", write: (at) => gguf(at, preset, {}, fill(GGML_TYPE.F16, "F16", 65504)) },
    { name: "gguf-bf16-1e30", format: "gguf", ...reg, ...same("ADAPTER_VALUE_OUT_OF_RANGE"), description: "GGUF BF16, every value ~1e30", write: (at) => gguf(at, preset, {}, fill(GGML_TYPE.BF16, "BF16", 1e30)) },
    { name: "gguf-f32-inf", format: "gguf", ...reg, ...same("ADAPTER_NONFINITE"), description: "GGUF F32, every value +Inf", write: (at) => gguf(at, preset, {}, fill(GGML_TYPE.F32, "F32", Infinity)) },
    { name: "gguf-q8-huge-scales", format: "gguf", ...reg, ...same("ADAPTER_VALUE_OUT_OF_RANGE"), description: "GGUF Q8_0 A whose block scales are 65504 (B F32: a Q8_0 row of rank 4 is no whole block)", write: (at) => gguf(at, preset, {}, { type: GGML_TYPE.Q8_0, data: q8HugeScales }, F32_SMALL) },
    { name: "gguf-alpha-huge", format: "gguf", ...reg, ...same("ADAPTER_VALUE_OUT_OF_RANGE"), description: "adapter.lora.alpha 3e38 in the metadata", write: (at) => gguf(at, preset, { "adapter.lora.alpha": { type: "f32", value: 3e38 } }) },
    { name: "gguf-metadata-garbage", format: "gguf", ...reg, ...same("ADAPTER_INVALID"), description: "general.type is a 100 KB string", write: (at) => gguf(at, preset, { "general.type": { type: "string", value: GARBAGE } }) },
    { name: "gguf-arch-garbage", format: "gguf", ...reg, ...same("ADAPTER_BASE_MISMATCH"), description: "general.architecture is a 100 KB string", write: (at) => gguf(at, preset, { "general.architecture": { type: "string", value: GARBAGE } }) },
    { name: "gguf-tensor-name-garbage", format: "gguf", ...reg, ...same("ADAPTER_INVALID"), description: "a tensor named by a 100 KB string", write: (at) => gguf(at, preset, {}, F32_SMALL, F32_SMALL, [GARBAGE, `${Q_GGUF}.lora_b`]) },
    {
      name: "gguf-symlink-outside", format: "gguf", scan: "skipped", skipReason: "symlink-escapes-root", ...same("ADAPTER_PATH_OUTSIDE_ROOT"),
      description: "the .gguf is a symlink to a GGUF LoRA outside",
      write: (at, outside) => symlinkSync(writeGgufLora(join(outside, "target.gguf"), preset, { seed: 3, rank: RANK, alpha: 8, targets: ["q"], type: "f32" }), at),
    },
  ];
}

function rmConfig(at: string): void {
  rmSync(join(at, "adapter_config.json"));
}

function rmWeights(at: string): void {
  rmSync(join(at, "adapter_model.safetensors"));
}

export function hostileAdapters(preset = "tiny-llama3"): HostileAdapter[] {
  return entries(preset).map(({ write: _w, ...e }) => e);
}

export function writeHostileCorpus(adaptersDir: string, outsideDir: string, preset = "tiny-llama3"): HostileAdapter[] {
  mkdirSync(adaptersDir, { recursive: true });
  mkdirSync(outsideDir, { recursive: true });
  writeFileSync(join(outsideDir, "secret.txt"), SECRET_FILE);
  return entries(preset).map(({ write, ...e }) => {
    const path = join(adaptersDir, e.format === "gguf" ? `${e.name}.gguf` : e.name);
    write(path, outsideDir);
    return { ...e, path };
  });
}

/** Throws unless `message` holds no 8 consecutive characters of the secret line and at most 64 of GARBAGE. */
export function assertHarmlessMessage(message: string): void {
  for (let i = 0; i + 8 <= SECRET_LINE.length; i++) {
    if (message.includes(SECRET_LINE.slice(i, i + 8))) throw new Error(`message carries the secret: ${message.slice(0, 200)}`);
  }
  if (message.includes(GARBAGE.slice(0, 65))) throw new Error(`message quotes more than 64 characters of file contents (${message.length} chars)`);
}
