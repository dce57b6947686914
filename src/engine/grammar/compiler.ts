/**
 * Compiles ConstraintSpecs into xgrammar grammars for one tokenizer, with an LRU cache.
 *
 * One ConstraintCompiler per tokenizer (per engine thread): create() loads a private xgrammar WASM
 * instance and builds its TokenizerInfo (~120-190 ms and ~16 MiB of WASM memory for a 128k-152k vocabulary; a matcher adds ~12-18 KiB).
 * compile() is async in signature but does its work synchronously on the calling thread (tens to
 * hundreds of ms for a JSON schema on a 128k vocabulary; see bench/grammar-mask.ts): compiled
 * grammars cannot move between threads or instances.
 *
 * Untrusted input is checked first on a separate, throw-away "checker" instance: xgrammar reports a
 * bad schema, regex or EBNF by aborting the instance it runs in (see wasm.ts). The checker runs the
 * very parse/convert step compile() then runs on the main instance — deterministic code on the
 * same input, so what passes the checker parses on the main instance too. If the main instance
 * nevertheless throws, it is retired (cache dropped, rebuilt on the next compile) and the caller
 * gets INTERNAL; live matchers keep their own (retired) instance until disposed.
 *
 * Cache: keyed by constraintKey(spec), bounded by count (default 64), least recently used evicted.
 * Rejections (INVALID_ARGUMENT) are cached too: they are deterministic. An evicted grammar's WASM
 * memory is freed once nothing references its CompiledConstraint (matchers hold their own
 * reference in C++), so eviction never breaks a live sequence.
 */
import { OpenLoraError, isOpenLoraError, oerr } from "../../errors.js";
import type { Tokenizer } from "../../tokenizer/tokenizer.js";
import { XgConstraintMatcher, type ConstraintMatcher, type MatcherContext } from "./matcher.js";
import { constraintKey, type ConstraintSpec } from "./spec.js";
import { buildGrammarVocab, maskWords, type GrammarVocab, type VocabType } from "./vocab.js";
import {
  callXgrammar, loadXgrammar, type XgBinding, type XgCompiledGrammar, type XgGrammarCompiler, type XgInstance,
  type XgTokenizerInfo,
} from "./wasm.js";

export interface CompiledConstraint {
  readonly spec: ConstraintSpec;
  /** A fresh matcher at the start of the constraint (~0.05 ms). */
  matcher(): ConstraintMatcher;
}

export interface ConstraintCompilerOptions {
  /** The model's logits row length, padding included (default: tokenizer.vocabSize). */
  vocabSize?: number;
  /** Overrides vocabulary type detection (vocab.ts). */
  vocabType?: VocabType;
  /** Compiled constraints kept (default 64). */
  cacheSize?: number;
  /** JSON kinds: any whitespace between JSON tokens, as vLLM's default (default true). */
  anyWhitespace?: boolean;
  /** JSON kinds with anyWhitespace: most whitespace characters in a row (default: unbounded, as vLLM). */
  maxWhitespace?: number;
}

const freeCompiled = new FinalizationRegistry<XgCompiledGrammar>((h) => {
  if (!h.isDeleted()) h.delete();
});

class XgCompiledConstraint implements CompiledConstraint {
  constructor(readonly spec: ConstraintSpec, private readonly ctx: MatcherContext, private readonly handle: XgCompiledGrammar) {
    freeCompiled.register(this, handle);
  }

  matcher(): ConstraintMatcher {
    if (this.handle.isDeleted()) throw oerr("INVALID_ARGUMENT", "the constraint compiler was disposed");
    return new XgConstraintMatcher(this.ctx, this.handle);
  }
}

interface Main extends MatcherContext {
  info: XgTokenizerInfo;
  compiler: XgGrammarCompiler;
  retired: boolean;
}

let checker: Promise<XgInstance> | undefined;

/** Runs the parse/convert step of `spec` on the checker instance; INVALID_ARGUMENT if xgrammar rejects it. */
async function check(spec: ConstraintSpec, build: (b: XgBinding) => { delete(): void } | undefined): Promise<void> {
  checker ??= loadXgrammar();
  const inst = await checker;
  try {
    callXgrammar(inst, build)?.delete();
  } catch (e) {
    if (checker !== undefined && (await checker) === inst) checker = undefined; // aborted: never reused
    throw new OpenLoraError("INVALID_ARGUMENT", `invalid ${spec.kind} constraint: ${clip((e as Error).message)}`, undefined, { cause: e });
  }
}

function clip(s: string, max = 240): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

export class ConstraintCompiler {
  readonly vocabSize: number;
  /** Words of a mask: ceil(vocabSize / 32). */
  readonly maskWords: number;
  private main: Promise<Main> | undefined;
  private readonly cache = new Map<string, Promise<CompiledConstraint>>();
  private readonly cacheSize: number;
  private disposed = false;

  private constructor(private readonly vocab: GrammarVocab, first: Main, private readonly opts: ConstraintCompilerOptions) {
    this.vocabSize = vocab.vocabSize;
    this.maskWords = maskWords(vocab.vocabSize);
    this.main = Promise.resolve(first);
    this.cacheSize = opts.cacheSize ?? 64;
    if (!Number.isInteger(this.cacheSize) || this.cacheSize < 1) throw oerr("INVALID_ARGUMENT", `cacheSize must be a positive integer, got ${this.cacheSize}`);
  }

  /** Async creation (WASM init, TokenizerInfo) once per tokenizer. */
  static async create(tokenizer: Tokenizer, opts: ConstraintCompilerOptions = {}): Promise<ConstraintCompiler> {
    const vocab = buildGrammarVocab(tokenizer, opts);
    return new ConstraintCompiler(vocab, await ConstraintCompiler.startMain(vocab), opts);
  }

  private static async startMain(vocab: GrammarVocab): Promise<Main> {
    const inst = await loadXgrammar();
    const b = inst.binding;
    return callXgrammar(inst, () => {
      const strings = b.vecStringFromJSArray(vocab.encoded);
      const stops = b.vecIntFromJSArray(vocab.stopIds);
      let info: XgTokenizerInfo;
      try {
        // prepend_space false: generated text continues a prompt, so a leading "▁" is a real space.
        info = new b.TokenizerInfo(strings, vocab.type, vocab.vocabSize, stops, false);
      } finally {
        strings.delete();
        stops.delete();
      }
      // One thread (the web build has no others); xgrammar's own cache off: ours is bounded.
      const compiler = new b.GrammarCompiler(info, 1, false);
      const main: Main = {
        inst, vocab, info, compiler, retired: false,
        onFailure: (e: unknown): never => {
          main.retired = true;
          throw new OpenLoraError("INTERNAL", `xgrammar failed: ${clip((e as Error).message)}`, undefined, { cause: e });
        },
      };
      return main;
    });
  }

  /** The compiled constraint for `spec`, from the cache when it was compiled before. */
  compile(spec: ConstraintSpec): Promise<CompiledConstraint> {
    if (this.disposed) return Promise.reject(oerr("INVALID_ARGUMENT", "the constraint compiler was disposed"));
    const key = constraintKey(spec);
    const hit = this.cache.get(key);
    if (hit !== undefined) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    const p = this.build(spec);
    this.cache.set(key, p);
    p.catch((e: unknown) => {
      if (!isOpenLoraError(e, "INVALID_ARGUMENT") && this.cache.get(key) === p) this.cache.delete(key);
    });
    while (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
    return p;
  }

  /** Frees the compiler's WASM objects; idempotent. Live matchers keep working until disposed. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.cache.clear();
    const main = this.main;
    this.main = undefined;
    void main?.then((m) => {
      m.compiler.delete();
      m.info.delete();
    });
  }

  private async build(spec: ConstraintSpec): Promise<CompiledConstraint> {
    const anyWs = this.opts.anyWhitespace ?? true;
    const maxWs = this.opts.maxWhitespace;
    const json = spec.kind === "json_schema" ? JSON.stringify(spec.schema) : undefined;
    const tag = spec.kind === "regex" ? structuralTag({ type: "regex", pattern: spec.pattern })
      : spec.kind === "choice" ? structuralTag({ type: "or", elements: spec.choices.map((value) => ({ type: "const_string", value })) })
      : undefined;
    switch (spec.kind) {
      case "json_object": break;
      case "json_schema": await check(spec, (b) => new b.Grammar.FromJSONSchema(json!, anyWs, undefined, undefined, true, maxWs, false)); break;
      case "regex": case "choice": await check(spec, (b) => b.Grammar.FromStructuralTag(tag!)); break;
      case "grammar": await check(spec, (b) => new b.Grammar.FromEBNF(spec.grammar, "root")); break;
      default: spec satisfies never;
    }
    const main = await this.liveMain();
    let handle: XgCompiledGrammar;
    try {
      handle = callXgrammar(main.inst, (b) => {
        const c = main.compiler;
        switch (spec.kind) {
          // Any object: the {"type":"object"} schema, non-strict (additional properties allowed).
          case "json_object": return c.CompileJSONSchema(JSON.stringify({ type: "object" }), anyWs, undefined, undefined, false, maxWs);
          case "json_schema": return c.CompileJSONSchema(json!, anyWs, undefined, undefined, true, maxWs);
          case "regex": case "choice": return c.CompileStructuralTag(tag!);
          case "grammar": {
            const g = new b.Grammar.FromEBNF(spec.grammar, "root");
            try {
              return c.CompileGrammar(g);
            } finally {
              g.delete();
            }
          }
          default: return spec satisfies never;
        }
      });
    } catch (e) {
      return main.onFailure(e);
    }
    return new XgCompiledConstraint(spec, main, handle);
  }

  /** The main instance, rebuilt if a failure retired it (the cache, of its grammars, dropped). */
  private async liveMain(): Promise<Main> {
    const current = this.main;
    if (current === undefined) throw oerr("INVALID_ARGUMENT", "the constraint compiler was disposed");
    const m = await current;
    if (!m.retired) return m;
    if (this.main === current) {
      this.cache.clear();
      this.main = ConstraintCompiler.startMain(this.vocab);
    }
    return this.liveMain();
  }
}

function structuralTag(format: Record<string, unknown>): string {
  return JSON.stringify({ type: "structural_tag", format });
}
