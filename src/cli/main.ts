/**
 * `openlora <command>`: generate, serve, verify, validate, ledger, chain, bench serve, synth, adapters. Errors print as `error [CODE]: message` on stderr with
 * exit code 1; usage errors exit with 2.
 */
import { isOpenLoraError, OpenLoraError } from "../errors.js";
import { runAdapters } from "./adapters.js";
import { CHAIN_USAGE, runChain } from "./chain.js";
import { runGenerate } from "./generate.js";
import { BENCH_SERVE_USAGE, runBenchServe } from "./bench-serve.js";
import { LEDGER_USAGE, runLedger } from "./ledger.js";
import { runServe, SERVE_USAGE } from "./serve.js";
import { runValidate, VALIDATE_USAGE } from "./validate.js";
import { runVerify, VERIFY_USAGE } from "./verify.js";
import { runSynth } from "./synth.js";

const USAGE = `openlora — serve many LoRA adapters on one base model, with attributed inference

Usage:
  openlora generate [--model <gguf file | HF folder>] --prompt <text> [--max-tokens N]
                    [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--seed S]
                    [--repeat-penalty R] [--presence-penalty P] [--frequency-penalty F]
                    [--stop <text>]... [--ignore-eos] [--quantize q8_0|q4_0] [--threads N] [--json]
                    [--adapter <id or path>[=<weight>]]... [--adapters <dir>] [--max-lora-rank R]
        Without --model, uses the embedded default demo model (generated once and cached).
        Several --adapter flags apply the weighted sum of their updates.
${SERVE_USAGE}${VERIFY_USAGE}${VALIDATE_USAGE}${LEDGER_USAGE}${CHAIN_USAGE}  ${BENCH_SERVE_USAGE}  openlora synth --preset <name> --out <path> [--format gguf|hf] [--type f32|f16|bf16|q8_0|q4_0|q4_k|q6_k] [--seed S]
        Writes a random-weight model with a real tokenizer. 'openlora synth --list' lists presets.
  openlora adapters merge [--model <base>] --out <dir> --method cat|linear|svd|ties|dare_linear|dare_ties|magnitude_prune
                          --adapter <id or path>[=<weight>]... [--adapters <dir>] [--density D] [--seed S] [--rank R]
                          [--majority-sign total|frequency] [--max-lora-rank R] [--force] [--json]
        Merges adapters offline into a new PEFT adapter folder that records its parents.
  openlora adapters list --adapters <dir> [--model <base>] [--json]
        Lists the adapters a directory registers (with --model: rank and modules, or the error).
`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case "generate": return await runGenerate(rest);
      case "serve": return await runServe(rest);
      case "verify": return await runVerify(rest);
      case "validate": return await runValidate(rest);
      case "ledger": return await runLedger(rest);
      case "chain": return await runChain(rest);
      case "bench":
        if (rest[0] !== "serve") throw new OpenLoraError("INVALID_ARGUMENT", "usage: openlora bench serve [...]");
        return await runBenchServe(rest.slice(1));
      case "synth": return await runSynth(rest);
      case "adapters": return await runAdapters(rest);
      case undefined: case "help": case "--help": case "-h":
        process.stdout.write(USAGE);
        return cmd === undefined ? 2 : 0;
      default:
        process.stderr.write(`error [INVALID_ARGUMENT]: unknown command "${cmd}"\n\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    if (isOpenLoraError(e)) {
      const cause = e.details?.causeCode ? ` (cause: ${String(e.details.causeCode)})` : "";
      process.stderr.write(`error [${e.code}]${cause}: ${e.message}\n`);
      return e.code === "INVALID_ARGUMENT" ? 2 : 1;
    }
    if ((e as { code?: string }).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" || (e as { code?: string }).code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
      process.stderr.write(`error [INVALID_ARGUMENT]: ${(e as Error).message}\n`);
      return 2;
    }
    throw e;
  }
}
