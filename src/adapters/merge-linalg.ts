/**
 * Small dense linear algebra in f64 for `svd` merging: a thin Householder QR, a one-sided Jacobi
 * SVD, and the truncated SVD of a low-rank product ΔW = Bc·Ac computed without forming ΔW:
 *
 *     Bc = Qb·Rb,  Acᵀ = Qa·Ra   (thin QR)      ΔW = Qb·(Rb·Raᵀ)·Qaᵀ
 *     Rb·Raᵀ = U·S·Vᵀ            (small SVD)    ΔW = (Qb·U)·S·(Qa·V)ᵀ
 *
 * so the cost is O((out + in)·R²) for R = Σ ranks, never O(out·in). Matrices are row-major.
 */

/** Thin QR of x [m, n]: Q [m, p] with orthonormal columns, R [p, n] upper triangular, p = min(m, n). */
export function thinQr(x: Float64Array, m: number, n: number): { q: Float64Array; r: Float64Array; p: number } {
  const a = Float64Array.from(x);
  const p = Math.min(m, n);
  const vs: Float64Array[] = [];
  for (let j = 0; j < p; j++) {
    const v = new Float64Array(m - j);
    let norm = 0;
    for (let i = j; i < m; i++) norm += a[i * n + j]! * a[i * n + j]!;
    norm = Math.sqrt(norm);
    vs.push(v);
    if (norm === 0) continue; // nothing to zero: the identity reflector (v = 0)
    const alpha = a[j * n + j]! >= 0 ? -norm : norm;
    for (let i = j; i < m; i++) v[i - j] = a[i * n + j]!;
    v[0]! -= alpha;
    let vn = 0;
    for (let i = 0; i < v.length; i++) vn += v[i]! * v[i]!;
    vn = Math.sqrt(vn);
    if (vn === 0) { v.fill(0); continue; }
    for (let i = 0; i < v.length; i++) v[i]! /= vn;
    for (let c = j; c < n; c++) {
      let d = 0;
      for (let i = j; i < m; i++) d += v[i - j]! * a[i * n + c]!;
      d *= 2;
      for (let i = j; i < m; i++) a[i * n + c]! -= d * v[i - j]!;
    }
  }
  const r = new Float64Array(p * n);
  for (let i = 0; i < p; i++) for (let c = i; c < n; c++) r[i * n + c] = a[i * n + c]!;
  // Q = H_0·H_1·…·H_{p-1}·[I_p; 0], applied right to left.
  const q = new Float64Array(m * p);
  for (let i = 0; i < p; i++) q[i * p + i] = 1;
  for (let j = p - 1; j >= 0; j--) {
    const v = vs[j]!;
    for (let c = 0; c < p; c++) {
      let d = 0;
      for (let i = j; i < m; i++) d += v[i - j]! * q[i * p + c]!;
      if (d === 0) continue;
      d *= 2;
      for (let i = j; i < m; i++) q[i * p + c]! -= d * v[i - j]!;
    }
  }
  return { q, r, p };
}

/** One-sided (Hestenes) Jacobi on g [rows, cols], rows ≥ cols, in place: g ← g·V with orthogonal columns. Returns V [cols, cols]. */
function jacobi(g: Float64Array, rows: number, cols: number): Float64Array {
  const v = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) v[i * cols + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let rotated = false;
    for (let p = 0; p < cols - 1; p++) {
      for (let q = p + 1; q < cols; q++) {
        let alpha = 0, beta = 0, gamma = 0;
        for (let i = 0; i < rows; i++) {
          const gp = g[i * cols + p]!, gq = g[i * cols + q]!;
          alpha += gp * gp; beta += gq * gq; gamma += gp * gq;
        }
        if (gamma === 0 || Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < rows; i++) {
          const gp = g[i * cols + p]!, gq = g[i * cols + q]!;
          g[i * cols + p] = c * gp - s * gq;
          g[i * cols + q] = s * gp + c * gq;
        }
        for (let i = 0; i < cols; i++) {
          const vp = v[i * cols + p]!, vq = v[i * cols + q]!;
          v[i * cols + p] = c * vp - s * vq;
          v[i * cols + q] = s * vp + c * vq;
        }
      }
    }
    if (!rotated) break;
  }
  return v;
}

/**
 * SVD of m [r, c]: m = U·diag(s)·Vᵀ with k = min(r, c) columns, s descending. Columns of U / V
 * belonging to a zero singular value are zero (they never contribute).
 */
export function svd(m: Float64Array, r: number, c: number): { u: Float64Array; s: Float64Array; v: Float64Array; k: number } {
  const tall = r >= c;
  const rows = tall ? r : c, cols = tall ? c : r;
  const g = new Float64Array(rows * cols);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) g[tall ? i * c + j : j * r + i] = m[i * c + j]!;
  const w = jacobi(g, rows, cols); // g = (input or its transpose)·w
  const k = cols;
  const norms = new Float64Array(k);
  for (let j = 0; j < k; j++) {
    let n = 0;
    for (let i = 0; i < rows; i++) n += g[i * cols + j]! * g[i * cols + j]!;
    norms[j] = Math.sqrt(n);
  }
  const order = Array.from({ length: k }, (_, j) => j).sort((x, y) => norms[y]! - norms[x]! || x - y);
  // Normalized g columns are the left vectors of the Jacobi input; w's columns its right vectors.
  const left = new Float64Array(rows * k), right = new Float64Array(cols * k), s = new Float64Array(k);
  order.forEach((j, o) => {
    const sv = norms[j]!;
    s[o] = sv;
    if (sv > 0) for (let i = 0; i < rows; i++) left[i * k + o] = g[i * cols + j]! / sv;
    for (let i = 0; i < cols; i++) right[i * k + o] = w[i * cols + j]!;
  });
  // For a wide input we decomposed mᵀ = left·S·rightᵀ, so m = right·S·leftᵀ.
  return tall ? { u: left, s, v: right, k } : { u: right, s, v: left, k };
}

/**
 * Truncated SVD of ΔW = bc·ac (bc [out, R], ac [R, in]) to `rank`: returns B' = U·S [out, rank]
 * and A' = Vᵀ [rank, in] with ΔW ≈ B'·A' (exact when rank ≥ rank(ΔW)). `rank` ≤ min(out, in, R).
 */
export function truncatedSvdOfProduct(bc: Float64Array, ac: Float64Array, out: number, inDim: number, R: number, rank: number): { b: Float64Array; a: Float64Array } {
  const act = new Float64Array(inDim * R);
  for (let j = 0; j < R; j++) for (let i = 0; i < inDim; i++) act[i * R + j] = ac[j * inDim + i]!;
  const qb = thinQr(bc, out, R);
  const qa = thinQr(act, inDim, R);
  // M = Rb·Raᵀ [pb, pa]
  const pb = qb.p, pa = qa.p;
  const m = new Float64Array(pb * pa);
  for (let i = 0; i < pb; i++) {
    for (let j = 0; j < pa; j++) {
      let d = 0;
      for (let t = 0; t < R; t++) d += qb.r[i * R + t]! * qa.r[j * R + t]!;
      m[i * pa + j] = d;
    }
  }
  const { u, s, v, k } = svd(m, pb, pa);
  const b = new Float64Array(out * rank);
  const a = new Float64Array(rank * inDim);
  for (let o = 0; o < Math.min(rank, k); o++) {
    for (let i = 0; i < out; i++) {
      let d = 0;
      for (let t = 0; t < pb; t++) d += qb.q[i * pb + t]! * u[t * k + o]!;
      b[i * rank + o] = d * s[o]!;
    }
    for (let i = 0; i < inDim; i++) {
      let d = 0;
      for (let t = 0; t < pa; t++) d += qa.q[i * pa + t]! * v[t * k + o]!;
      a[o * inDim + i] = d;
    }
  }
  return { b, a };
}
