/** The span index file: round trip, and typed rejection of truncated or corrupt files. */
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  SpanIndex, findSpanEvidence, readSpanIndexFile, writeSpanIndexFile, type CorpusRecord, type SpanIndexFileProblem,
} from "../../src/attribution/spans/index.js";
import { isOpenLoraError } from "../../src/errors.js";

const dir = mkdtempSync(join(tmpdir(), "openlora-spans-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function seededRecords(count: number, seed: number): CorpusRecord[] {
  let s = seed;
  const next = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 8;
  return Array.from({ length: count }, (_, r) => ({
    recordId: `rec-${r}-ü`,
    contributor: `0xC0FFEE${r % 3}`,
    tokens: Uint32Array.from({ length: next() % 60 }, () => next() % 40),
  }));
}

/** The details.reason of the typed error reading `path` throws. */
function problem(path: string): SpanIndexFileProblem | "no error" | "untyped" {
  try {
    readSpanIndexFile(path);
    return "no error";
  } catch (e) {
    if (!isOpenLoraError(e, "INVALID_ARGUMENT")) return "untyped";
    return e.details?.reason as SpanIndexFileProblem;
  }
}

describe("span index file", () => {
  const records = seededRecords(40, 7);
  const index = SpanIndex.build(records);
  const path = join(dir, "v1.spans");
  writeSpanIndexFile(index, path);
  const bytes = readFileSync(path);

  const variant = (name: string, edit: (b: Buffer) => Buffer): string => {
    const p = join(dir, name);
    writeFileSync(p, edit(Buffer.from(bytes)));
    return p;
  };

  it("round-trips every array and answers queries identically", () => {
    const loaded = readSpanIndexFile(path);
    expect(loaded.parts).toEqual(index.parts);
    const output = [...Array.from(records[3]!.tokens), ...Array.from(records[9]!.tokens).slice(0, 20), 39, 38];
    const evidence = findSpanEvidence(index, output, { minLength: 4 });
    expect(evidence.spans.length).toBeGreaterThan(0);
    expect(findSpanEvidence(loaded, output, { minLength: 4 })).toEqual(evidence);
  });

  it("round-trips an empty corpus", () => {
    const p = join(dir, "empty.spans");
    writeSpanIndexFile(SpanIndex.build([]), p);
    const loaded = readSpanIndexFile(p);
    expect(loaded.recordCount).toBe(0);
    expect(loaded.findMaximalSpans([1, 2, 3], { minLength: 1 })).toEqual([]);
  });

  it("rejects truncated files at every kind of cut", () => {
    for (const keep of [0, 10, 63, 64, 100, bytes.length - 1]) {
      const p = variant(`cut-${keep}.spans`, (b) => b.subarray(0, keep));
      expect(problem(p), `cut at ${keep}`).toBe("truncated");
    }
    const p = join(dir, "shrunk.spans");
    writeFileSync(p, bytes);
    truncateSync(p, bytes.length - 5);
    expect(problem(p)).toBe("truncated");
  });

  it("rejects bad magic, unknown versions, bad headers and trailing bytes", () => {
    expect(problem(variant("magic.spans", (b) => (b.write("GGUF", 0, "latin1"), b)))).toBe("bad-magic");
    expect(problem(variant("version.spans", (b) => (b.writeUInt32LE(2, 8), b)))).toBe("unsupported-version");
    expect(problem(variant("header.spans", (b) => (b.writeUInt32LE(0x90000000, 16), b)))).toBe("bad-header");
    expect(problem(variant("tail.spans", (b) => Buffer.concat([b, Buffer.from([0])])))).toBe("trailing-bytes");
    expect(problem(join(dir, "missing.spans"))).toBe("unreadable");
  });

  it("rejects a flipped byte anywhere in the body by checksum", () => {
    for (const at of [64, 64 + 4 * 5 + 1, bytes.length - 300, bytes.length - 1]) {
      expect(problem(variant(`flip-${at}.spans`, (b) => ((b[at]! ^= 0x40), b))), `byte ${at}`).toBe("checksum");
    }
  });

  it("rejects structurally wrong arrays even when the checksum is consistent", () => {
    const { text, suffixArray, recordStarts, tokenLimit, recordIds, contributors } = index.parts;
    const broken = (what: Partial<Parameters<typeof SpanIndex.fromParts>[0]>) => () =>
      SpanIndex.fromParts({ text, suffixArray, recordStarts, tokenLimit, recordIds, contributors, ...what });
    const swapped = suffixArray.slice();
    swapped[0] = suffixArray[suffixArray.length - 1]!;
    swapped[suffixArray.length - 1] = suffixArray[0]!;
    const dup = suffixArray.slice();
    dup[1] = dup[0]!;
    const noSeparator = text.slice();
    noSeparator[recordStarts[1]! - 1] = 0;
    for (const fn of [
      broken({ suffixArray: swapped }), broken({ suffixArray: dup }), broken({ text: noSeparator }),
      broken({ recordIds: recordIds.map(() => "same") }), broken({ contributors: contributors.slice(1) }),
      broken({ tokenLimit: tokenLimit - 1 }),
    ]) {
      let error: unknown;
      try {
        fn();
      } catch (e) {
        error = e;
      }
      expect(isOpenLoraError(error, "INVALID_ARGUMENT") && error.details?.reason).toBe("structure");
    }
  });
});
