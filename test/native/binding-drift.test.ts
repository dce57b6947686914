/** The addon's exports == NATIVE_FUNCTIONS == the methods declared in native/openlora_native.d.ts. */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { NATIVE_FUNCTIONS, native } from "../../src/native/index.js";

describe("binding drift", () => {
  it("the addon exports exactly the declared functions", () => {
    expect(Object.keys(native).sort()).toEqual([...NATIVE_FUNCTIONS].sort());
    for (const name of NATIVE_FUNCTIONS) expect(typeof (native as unknown as Record<string, unknown>)[name]).toBe("function");
  });

  it("NATIVE_FUNCTIONS lists the methods of the OpenLoraNative interface in the d.ts", () => {
    const dts = readFileSync(fileURLToPath(new URL("../../native/openlora_native.d.ts", import.meta.url)), "utf8");
    const body = dts.slice(dts.indexOf("export interface OpenLoraNative"));
    const declared = [...body.matchAll(/^ {2}(\w+)\(/gm)].map((m) => m[1]);
    expect(declared.sort()).toEqual([...NATIVE_FUNCTIONS].sort());
  });

  it("reports CPU features and a consistent default implementation", () => {
    const f = native.cpuFeatures();
    const avx2 = f.avx2 && f.fma && f.f16c;
    const avx512 = avx2 && f.avx512 && f.avx512vnni;
    expect(native.getKernelImpl()).toBe(avx512 && f.amx ? "amx" : avx512 ? "avx512" : avx2 ? "avx2" : "reference");
  });
});
