/**
 * Replays a receipt's inference from the model and adapter files: content hashes checked first, then the
 * same prompt tokens, sampling parameters (seed included) and token count through the engine; the output
 * must hash to the receipt's outputHash. The engine is deterministic and batch-invariant, so a replay
 * matches bit for bit or the receipt lies. One code path for `openlora verify` and `openlora validate`;
 * the model is loaded once per Replayer, an adapter once per id.
 */
import { baseShapeOf } from "../adapters/base-shape.js";
import { createAdapterLoader } from "../adapters/loader.js";
import { AdapterRegistry } from "../adapters/registry.js";
import { contentHash } from "../attribution/content-hash.js";
import { hashTokenIds, type Receipt } from "../attribution/receipts.js";
import { generate } from "../engine/generate.js";
import { loadModel } from "../model/load.js";
import { native } from "../native/index.js";

export interface ReplayResult {
  ok: boolean;
  detail: string;
  /** The replayed output's token ids (absent when the files did not match). */
  tokens?: number[];
}

type Loaded = Awaited<ReturnType<typeof loadModel>>;
type AdapterWeights = Awaited<ReturnType<ReturnType<typeof createAdapterLoader>>>["weights"];

export class Replayer {
  private model: Promise<{ loaded: Loaded; hash: string }> | undefined;
  private registry: Promise<AdapterRegistry> | undefined;
  private readonly adapters = new Map<string, Promise<{ hash: string; weights: AdapterWeights } | string>>();

  constructor(private readonly modelPath: string, private readonly adaptersDir: string | undefined, threads: number) {
    native.setThreads(threads);
  }

  async replay(receipt: Receipt, prompt: number[]): Promise<ReplayResult> {
    this.model ??= (async () => ({ hash: await contentHash(this.modelPath), loaded: await loadModel(this.modelPath) }))();
    const { loaded, hash } = await this.model;
    if (hash !== receipt.base.contentHash) return { ok: false, detail: `model file hash ${hash} differs from the receipt's ${receipt.base.contentHash}` };
    const applied = [];
    for (const a of receipt.adapters) {
      const got = await this.adapter(a.id, loaded);
      if (typeof got === "string") return { ok: false, detail: got };
      if (got.hash !== a.contentHash) return { ok: false, detail: `adapter ${a.id} files hash ${got.hash}, the receipt says ${a.contentHash}` };
      applied.push({ adapter: got.weights, weight: a.weightPpm / 1_000_000 });
    }
    const out = generate(loaded, { prompt, maxTokens: receipt.tokensOut, sampling: receipt.sampling, ignoreEos: true, adapters: applied });
    const h = hashTokenIds(out.tokens);
    return h === receipt.outputHash
      ? { ok: true, detail: `${out.tokens.length} tokens replayed, output hash matches`, tokens: out.tokens }
      : { ok: false, detail: `replayed output hashes to ${h}, the receipt says ${receipt.outputHash}`, tokens: out.tokens };
  }

  private adapter(id: string, loaded: Loaded): Promise<{ hash: string; weights: AdapterWeights } | string> {
    let p = this.adapters.get(id);
    if (!p) {
      p = (async () => {
        this.registry ??= (async () => {
          const r = new AdapterRegistry();
          if (this.adaptersDir) await r.scanDirectory(this.adaptersDir);
          return r;
        })();
        const entry = (await this.registry).get(id);
        if (!entry) return `adapter ${id} is not in ${this.adaptersDir ?? "(no --adapters)"}`;
        const hash = await contentHash(entry.source.path);
        const weights = (await createAdapterLoader(baseShapeOf(loaded.config))(entry, new AbortController().signal)).weights;
        return { hash, weights };
      })();
      this.adapters.set(id, p);
    }
    return p;
  }
}
