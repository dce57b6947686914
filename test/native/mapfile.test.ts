/** mapFile: private mapping, contents, copy-on-write, errors with Node-style codes (a file over 4 GiB included). */
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { native } from "../../src/native/index.js";

const dir = mkdtempSync(join(tmpdir(), "openlora-map-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("mapFile", () => {
  it("maps the whole file; writes stay private", () => {
    const p = join(dir, "a.bin");
    const data = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i & 255));
    writeFileSync(p, data);
    const ab = native.mapFile(p);
    expect(ab.byteLength).toBe(data.length);
    const u = new Uint8Array(ab);
    expect(Buffer.compare(Buffer.from(u), data)).toBe(0);
    u[0] = 99;
    expect(readFileSync(p)[0]).toBe(0);
  });

  it("throws with code ENOENT / EISDIR / EINVAL (empty)", () => {
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return (e as { code?: string }).code;
      }
      return "no error";
    };
    expect(code(() => native.mapFile(join(dir, "missing")))).toBe("ENOENT");
    expect(code(() => native.mapFile(dir))).toBe("EISDIR");
    const empty = join(dir, "empty");
    writeFileSync(empty, "");
    expect(code(() => native.mapFile(empty))).toBe("EINVAL");
    expect(() => native.mapFile(42 as never)).toThrow(TypeError);
  });

  it("refuses a file over 4 GiB with EFBIG (it used to abort the process with a double free)", () => {
    const big = join(dir, "sparse-4g-plus");
    writeFileSync(big, "");
    truncateSync(big, 2 ** 32 + 4096);  // sparse: no disk blocks written
    let err: { code?: string; message?: string } | undefined;
    try {
      native.mapFile(big);
    } catch (e) {
      err = e as typeof err;
    }
    expect(err?.code).toBe("EFBIG");
    expect(err?.message).toContain("4 GiB");
    truncateSync(big, 2 ** 20);
    expect(native.mapFile(big).byteLength).toBe(2 ** 20);  // still maps what it can
  });
});
