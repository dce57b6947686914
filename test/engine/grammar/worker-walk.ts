/** One random walk from scratch (tokenizer, compiler, compile): what worker.test.ts runs in both threads. */
import { ConstraintCompiler } from "../../../src/engine/grammar/index.js";
import { SPECS } from "./fixtures.js";
import { loadTokenizer, randomWalk, type TokenizerName, type WalkResult } from "./walk.js";

export interface WalkJob { tokenizer: TokenizerName; kind: keyof typeof SPECS; seed: number }

export async function runWalk(job: WalkJob): Promise<WalkResult> {
  const tok = loadTokenizer(job.tokenizer);
  const cc = await ConstraintCompiler.create(tok);
  const m = (await cc.compile(SPECS[job.kind])).matcher();
  try {
    return randomWalk(tok, m, cc.maskWords, job.seed);
  } finally {
    m.dispose();
    cc.dispose();
  }
}
