/**
 * Stop strings over streamed text: text is released only once it can no longer be the start of
 * a stop string, and generation stops at the first complete match (the match is not emitted,
 * unless `includeStop`; text after it never is).
 */
export class StopMatcher {
  private pending = "";
  private stopped = false;
  private readonly longest: number;

  private readonly includeStop: boolean;

  constructor(private readonly stops: readonly string[], opts: { includeStop?: boolean } = {}) {
    this.includeStop = opts.includeStop ?? false;
    this.longest = stops.reduce((a, s) => Math.max(a, s.length), 0);
  }

  /** Adds new text; returns what may be shown now, and whether a stop string was completed. */
  push(text: string): { emit: string; stopped: boolean } {
    if (this.stopped) return { emit: "", stopped: true };
    if (this.stops.length === 0) return { emit: text, stopped: false };
    this.pending += text;
    let cut = -1;
    let matched = "";
    for (const s of this.stops) {
      if (!s) continue;
      const at = this.pending.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut || (at === cut && s.length > matched.length))) { cut = at; matched = s; }
    }
    if (cut >= 0) {
      this.stopped = true;
      const emit = this.pending.slice(0, this.includeStop ? cut + matched.length : cut);
      this.pending = "";
      return { emit, stopped: true };
    }
    // Hold back the longest suffix that is a prefix of some stop string.
    let hold = 0;
    for (let n = Math.min(this.longest - 1, this.pending.length); n > 0; n--) {
      const tail = this.pending.slice(this.pending.length - n);
      if (this.stops.some((s) => s.startsWith(tail))) { hold = n; break; }
    }
    const emit = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return { emit, stopped: false };
  }

  /** Adds text that is not searched for stop strings (min_tokens): it and anything held back are released. */
  pass(text: string): { emit: string; stopped: boolean } {
    if (this.stopped) return { emit: "", stopped: true };
    const emit = this.pending + text;
    this.pending = "";
    return { emit, stopped: false };
  }

  /** Releases held-back text at the end of generation. */
  flush(extra = ""): string {
    if (this.stopped) return "";
    const { emit, stopped } = this.push(extra);
    if (stopped) return emit;
    const rest = this.pending;
    this.pending = "";
    return emit + rest;
  }
}
