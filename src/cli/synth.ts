import { parseArgs } from "node:util";
import { oerr } from "../errors.js";
import { PRESETS } from "../synth/presets.js";
import { type GgufWeightType, type HfDtype, writeGgufModel, writeHfModel } from "../synth/synthesize.js";
import { choiceArg, intArg } from "./args.js";

export async function runSynth(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      preset: { type: "string" }, out: { type: "string" }, format: { type: "string" },
      type: { type: "string" }, seed: { type: "string" }, list: { type: "boolean" },
    },
  });
  if (values.list) {
    for (const p of Object.values(PRESETS)) process.stdout.write(`${p.name.padEnd(16)} ${p.description}\n`);
    return 0;
  }
  if (!values.preset || !values.out) throw oerr("INVALID_ARGUMENT", "synth needs --preset and --out (see 'openlora synth --list')");
  const format = choiceArg(values.format, "format", ["gguf", "hf"] as const) ?? "gguf";
  const seed = intArg(values.seed, "seed", 0, 1)!;
  const start = Date.now();
  if (format === "gguf") {
    const type = choiceArg(values.type, "type", ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"] as const) ?? "f32";
    writeGgufModel(values.out, values.preset, { seed, type: type as GgufWeightType });
  } else {
    const type = choiceArg(values.type, "type", ["f32", "f16", "bf16"] as const) ?? "f32";
    writeHfModel(values.out, values.preset, { seed, dtype: type.toUpperCase() as HfDtype });
  }
  process.stderr.write(`wrote ${values.out} (${format}, preset ${values.preset}, seed ${seed}) in ${((Date.now() - start) / 1000).toFixed(1)} s\n`);
  return 0;
}
