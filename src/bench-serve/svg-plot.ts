/** Minimal SVG line charts for the serving report: axes, ticks, one polyline per series, a legend. */

export interface Series {
  name: string;
  points: Array<[number, number]>;
  color?: string;
  dashed?: boolean;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Log-scale x axis (e.g. number of adapters 1, 10, 100, 1000). */
  logX?: boolean;
  /** Linear x axis starting at 0 (e.g. request rate). */
  xFromZero?: boolean;
  width?: number;
  height?: number;
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

export function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&apos;");
}

/** About `count` round tick values from lo (rounded down) to hi (rounded up), so they cover [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  return Array.from({ length: last - first + 1 }, (_, i) => Number(((first + i) * step).toPrecision(12)));
}

function fmt(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
  if (a >= 1e4) return `${Number((v / 1e3).toPrecision(3))}k`;
  return String(Number(v.toPrecision(4)));
}

export function lineChartSvg(o: ChartOptions): string {
  const W = o.width ?? 720;
  const H = o.height ?? 420;
  const m = { left: 70, right: 190, top: 40, bottom: 55 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const series = o.series.map((s, i) => ({
    ...s, color: s.color ?? PALETTE[i % PALETTE.length]!,
    points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logX || x > 0)).sort((a, b) => a[0] - b[0]),
  }));
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const tx = (x: number) => (o.logX ? Math.log10(x) : x);
  let x0 = xs.length && !(o.xFromZero && !o.logX) ? Math.min(...xs.map(tx)) : 0;
  let x1 = xs.length ? Math.max(...xs.map(tx)) : 1;
  if (x1 === x0) { x0 -= 0.5; x1 += 0.5; }
  const yMax = ys.length ? Math.max(...ys) : 1;
  const yTicks = niceTicks(0, yMax > 0 ? yMax * 1.05 : 1);
  const y1 = yTicks[yTicks.length - 1]!;
  const px = (x: number) => m.left + ((tx(x) - x0) / (x1 - x0)) * pw;
  const py = (y: number) => m.top + ph - (y / y1) * ph;
  const xTicks = o.logX
    ? Array.from({ length: Math.floor(x1) - Math.ceil(x0) + 1 }, (_, i) => Math.pow(10, Math.ceil(x0) + i))
    : niceTicks(x0, x1).filter((t) => t >= x0 - 1e-9 && t <= x1 + 1e-9);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(o.title)}</text>`);
  for (const t of yTicks) {
    const y = py(t).toFixed(1);
    out.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${fmt(t)}</text>`);
  }
  for (const t of xTicks) {
    const x = px(t).toFixed(1);
    out.push(`<line x1="${x}" y1="${m.top + ph}" x2="${x}" y2="${m.top + ph + 5}" stroke="black"/>`);
    out.push(`<text x="${x}" y="${m.top + ph + 18}" text-anchor="middle">${fmt(t)}</text>`);
  }
  out.push(`<line x1="${m.left}" y1="${m.top + ph}" x2="${m.left + pw}" y2="${m.top + ph}" stroke="black"/>`);
  out.push(`<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${m.top + ph}" stroke="black"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle">${escapeXml(o.xLabel)}</text>`);
  out.push(`<text x="16" y="${m.top + ph / 2}" text-anchor="middle" transform="rotate(-90 16 ${m.top + ph / 2})">${escapeXml(o.yLabel)}</text>`);
  series.forEach((s, i) => {
    const dash = s.dashed ? ` stroke-dasharray="6 4"` : "";
    const pts = s.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" ");
    out.push(`<g class="series" data-name="${escapeXml(s.name)}">`);
    if (s.points.length > 1) out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2"${dash} points="${pts}"/>`);
    for (const [x, y] of s.points) out.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${s.color}"/>`);
    out.push(`</g>`);
    const ly = m.top + 10 + i * 18;
    const lx = m.left + pw + 15;
    out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 22}" y2="${ly}" stroke="${s.color}" stroke-width="2"${dash}/>`);
    out.push(`<text x="${lx + 28}" y="${ly}" dominant-baseline="middle">${escapeXml(s.name)}</text>`);
  });
  out.push(`</svg>`);
  return `${out.join("\n")}\n`;
}
