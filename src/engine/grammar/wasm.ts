/**
 * Loads one instance of xgrammar's WebAssembly build (@mlc-ai/web-xgrammar 0.1.27) and exposes
 * its raw embind classes, synchronously callable once loaded.
 *
 * Why not `import "@mlc-ai/web-xgrammar"`: the package declares `"type": "module"` but ships a
 * UMD bundle that calls `require` at load time, so Node refuses it as an ES module
 * ("require is not defined in ES module scope"). Its wrapper classes are also unfit for an engine
 * loop: the bitmask call is async (only to await the WASM init), and several helpers leak embind
 * vectors. So the bundle's source is evaluated here as the CommonJS script it really is, with three
 * exact-text patches (each checked to match once, hence the exact version pin in package.json):
 *  1. `await import('module')` → `require('module')`: dynamic import from evaluated code fails
 *     under vm-based loaders (vitest, tsx workers);
 *  2. the emscripten module receives our options: print/printErr captured, not written to stdout;
 *  3. the closure's `binding` (the embind module) is exported, so the classes are called directly.
 *
 * Failure model: any xgrammar check failure (a bad schema, regex or EBNF) calls `abort()`, which
 * throws a WebAssembly.RuntimeError and leaves the instance unfit for further use (the WASM stack
 * pointer is not restored, allocations leak). Callers therefore try untrusted input on a
 * throw-away instance first (see compiler.ts) and treat any throw from an instance as fatal to it.
 *
 * Each instance is single-threaded (xgrammar's web build runs with max_threads = 1), owns its own
 * WASM memory (grows, never shrinks) and works in any thread, worker_threads included; objects of
 * one instance must never be passed to another.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";

/** An embind object: C++ memory freed by delete(), exactly once. */
export interface EmbindHandle {
  delete(): void;
  isDeleted(): boolean;
}

export interface XgVectorInt extends EmbindHandle { size(): number }
export interface XgVectorString extends EmbindHandle { size(): number }
export interface XgGrammar extends EmbindHandle { ToString(): string }
export type XgTokenizerInfo = EmbindHandle & { GetVocabSize(): number };
export type XgCompiledGrammar = EmbindHandle;

export interface XgGrammarCompiler extends EmbindHandle {
  CompileJSONSchema(schema: string, anyWhitespace: boolean, indent: number | undefined,
    separators: { first: string; second: string } | undefined, strict: boolean, maxWhitespace: number | undefined): XgCompiledGrammar;
  CompileBuiltinJSONGrammar(): XgCompiledGrammar;
  CompileGrammar(grammar: XgGrammar): XgCompiledGrammar;
  CompileStructuralTag(json: string): XgCompiledGrammar;
}

export interface XgGrammarMatcher extends EmbindHandle {
  AcceptToken(id: number, verbose: boolean): boolean;
  /** A new std::vector<int32> of ceil(vocabSize / 32) words: bit set = token allowed. */
  GetNextTokenBitmask(vocabSize: number): XgVectorInt;
  IsTerminated(): boolean;
}

/** The embind module of one instance (the subset openlora calls). */
export interface XgBinding {
  vecStringFromJSArray(a: readonly string[]): XgVectorString;
  vecIntFromJSArray(a: readonly number[]): XgVectorInt;
  /** A view of the vector's memory, valid until the vector is deleted or memory grows. */
  vecIntToView(v: XgVectorInt): Int32Array;
  HEAP8: Int8Array;
  TokenizerInfo: new (vocab: XgVectorString, vocabType: "RAW" | "BYTE_FALLBACK" | "BYTE_LEVEL", vocabSize: number | undefined,
    stopTokenIds: XgVectorInt | undefined, prependSpace: boolean) => XgTokenizerInfo;
  GrammarCompiler: new (info: XgTokenizerInfo, maxThreads: number, cacheEnabled: boolean) => XgGrammarCompiler;
  GrammarMatcher: new (compiled: XgCompiledGrammar, overrideStopTokens: XgVectorInt | undefined,
    terminateWithoutStopToken: boolean, maxRollbackTokens: number) => XgGrammarMatcher;
  Grammar: {
    FromEBNF: new (ebnf: string, rootRule: string) => XgGrammar;
    FromJSONSchema: new (schema: string, anyWhitespace: boolean, indent: number | undefined,
      separators: { first: string; second: string } | undefined, strict: boolean, maxWhitespace: number | undefined, printConverted: boolean) => XgGrammar;
    FromStructuralTag(json: string): XgGrammar;
  };
}

export interface XgInstance {
  readonly binding: XgBinding;
  /** Everything the instance printed (xgrammar's [FATAL]/[WARNING] lines), newest last, capped. */
  readonly log: string[];
}

const PATCHES: readonly (readonly [string, string])[] = [
  ["const{createRequire:createRequire}=await import('module');", "const{createRequire:createRequire}=require('module');"],
  ["binding = await Module();", "binding = await Module(__openloraModuleArg);"],
  ["  var index = { Grammar,", "  exports.__openloraBinding = () => binding;\n  var index = { Grammar,"],
];

type Factory = (exports: Record<string, unknown>, require: NodeJS.Require, module: { exports: unknown },
  filename: string, dirname: string, moduleArg: Record<string, unknown>) => void;

let factory: { fn: Factory; file: string } | undefined;

function loadFactory(): { fn: Factory; file: string } {
  if (factory) return factory;
  const file = createRequire(import.meta.url).resolve("@mlc-ai/web-xgrammar/lib/index.js");
  let src = readFileSync(file, "utf8");
  for (const [from, to] of PATCHES) {
    const at = src.indexOf(from);
    if (at === -1 || src.indexOf(from, at + 1) !== -1) {
      throw new Error(`@mlc-ai/web-xgrammar: unexpected bundle (patch site ${JSON.stringify(from.slice(0, 40))} not found exactly once); openlora expects version 0.1.27`);
    }
    src = src.slice(0, at) + to + src.slice(at + from.length);
  }
  const fn = new Function("exports", "require", "module", "__filename", "__dirname", "__openloraModuleArg", src) as Factory;
  factory = { fn, file };
  return factory;
}

const MAX_LOG_LINES = 32;

/** A fresh, independent xgrammar instance (its own WASM memory); ~15 ms. */
export async function loadXgrammar(): Promise<XgInstance> {
  const { fn, file } = loadFactory();
  const log: string[] = [];
  const sink = (line: string): void => {
    log.push(line);
    if (log.length > MAX_LOG_LINES) log.shift();
  };
  const exports: Record<string, unknown> = {};
  const module = { exports };
  fn(exports, createRequire(file), module, file, dirname(file), { print: sink, printErr: sink });
  // Any async factory of the bundle triggers the WASM init; createTokenizerInfo([]) is the cheapest.
  const ti = await (exports["TokenizerInfo"] as { createTokenizerInfo(v: string[]): Promise<{ dispose(): void }> }).createTokenizerInfo([]);
  ti.dispose();
  const binding = (exports["__openloraBinding"] as () => XgBinding)();
  return { binding, log };
}

/** A call into an instance threw: the instance must not be used again (see the top comment). */
export class XgrammarFailure extends Error {
  override readonly name = "XgrammarFailure";
}

/**
 * Runs `fn` on the instance; a throw comes out as an XgrammarFailure carrying xgrammar's own
 * message (its "[FATAL] file:line: Check failed: (...) is false:" prefix stripped), or the error's
 * when xgrammar printed none (a C++ exception arrives as a bare number).
 */
export function callXgrammar<T>(inst: XgInstance, fn: (b: XgBinding) => T): T {
  inst.log.length = 0;
  try {
    return fn(inst.binding);
  } catch (e) {
    const fatal = inst.log.find((l) => l.startsWith("[FATAL]"));
    const why = fatal !== undefined
      ? fatal.replace(/^\[FATAL\]\s*\S+:\d+:\s*/, "").replace(/^Check failed: \(.*?\) is false: /, "")
      : e instanceof Error ? e.message : `xgrammar raised a C++ exception (${String(e)})`;
    throw new XgrammarFailure(why, { cause: e });
  }
}
