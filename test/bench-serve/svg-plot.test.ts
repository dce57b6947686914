import { describe, expect, it } from "vitest";
import { lineChartSvg, niceTicks } from "../../src/bench-serve/svg-plot.js";

/** Checks that tags nest and close properly and attributes are quoted; returns the element names seen. */
function parseXmlish(svg: string): string[] {
  const names: string[] = [];
  const stack: string[] = [];
  const body = svg.replace(/^<\?xml[^>]*\?>/, "");
  const text = body.replace(/<[^>]*>/g, "");
  expect(text).not.toMatch(/[<>]/);
  expect(text).not.toMatch(/&(?!(amp|lt|gt|quot|apos);)/);
  for (const m of body.matchAll(/<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<>]*")*)\s*(\/?)>/g)) {
    const [, close, name, , selfClose] = m;
    names.push(name!);
    if (close) expect(stack.pop()).toBe(name);
    else if (!selfClose) stack.push(name!);
  }
  const tagCount = (body.match(/</g) ?? []).length;
  expect(names.length).toBe(tagCount); // every '<' starts a well-formed tag
  expect(stack).toEqual([]);
  return names;
}

describe("SVG line chart", () => {
  it("is well-formed, has one polyline per multi-point series and a legend entry per series", () => {
    const svg = lineChartSvg({
      title: "Throughput <vs> adapters & more", xLabel: "adapters", yLabel: "tok/s", logX: true,
      series: [
        { name: "openlora", points: [[1, 100], [10, 90], [100, 80], [1000, 70]] },
        { name: "llama.cpp \"ctx\"", points: [[1, 60], [10, 30], [100, 10]], dashed: true },
        { name: "single", points: [[10, 5]] },
      ],
    });
    expect(svg.startsWith("<svg")).toBe(true);
    const names = parseXmlish(svg);
    expect(names[0]).toBe("svg");
    expect(names.filter((n) => n === "polyline").length).toBe(2);
    expect(svg).toContain('data-name="openlora"');
    expect(svg).toContain("llama.cpp &quot;ctx&quot;");
    expect(svg).toContain("Throughput &lt;vs&gt; adapters &amp; more");
    expect(svg).toContain("stroke-dasharray");
    // Log axis: decade ticks.
    for (const t of [">1<", ">10<", ">100<", ">1000<"]) expect(svg).toContain(t);
    expect(svg).not.toContain("NaN");
  });

  it("copes with empty series and non-finite points", () => {
    const svg = lineChartSvg({ title: "t", xLabel: "x", yLabel: "y", series: [{ name: "a", points: [[1, NaN], [2, Infinity]] }, { name: "b", points: [] }] });
    parseXmlish(svg);
    expect(svg).not.toContain("NaN");
    expect(svg).not.toContain("Infinity");
  });

  it("nice ticks are round and cover the range", () => {
    expect(niceTicks(0, 100)).toEqual([0, 20, 40, 60, 80, 100]);
    const t = niceTicks(0, 0.37);
    expect(t[0]).toBe(0);
    expect(t[t.length - 1]).toBeGreaterThanOrEqual(0.35);
  });
});
