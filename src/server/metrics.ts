/**
 * Prometheus metrics of one server, in a registry of its own (several servers may live in one
 * process, e.g. in tests). Latencies are measured on the HTTP side from event arrival times;
 * engine-side figures are mirrored from engine.stats() when /metrics is scraped.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { EngineHandle, EngineStats } from "../engine/protocol.js";

const P = "openlora_";

const TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320];
const TPOT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5];
const E2E_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 300, 600, 1200];
const LOAD_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

type GaugeName = "waiting" | "running" | "kvUsed" | "kvFree" | "resident" | "residentBytes" | "budgetBytes" | "registered";
type MirroredName = "loads" | "evictions" | "hits" | "misses" | "failures" | "preemptions";

/** A counter that follows a cumulative engine counter by its increments. */
interface Mirrored {
  counter: Counter;
  last: number;
  read: (s: EngineStats) => number;
}

export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<"route" | "status">;
  readonly errors: Counter<"code">;
  readonly ttft: Histogram;
  readonly tpot: Histogram;
  readonly e2e: Histogram;
  readonly promptTokens: Counter;
  readonly generationTokens: Counter;
  private readonly adapterLoad: Histogram;
  private readonly engineRestarts: Counter;
  private lastRestarts = 0;
  private readonly gauges: Record<GaugeName, Gauge>;
  private chain: { followed: Gauge; posted: Gauge; pending: Gauge; failures: Counter; lastFailures: number } | undefined;
  private readonly mirrored: Record<MirroredName, Mirrored>;

  constructor() {
    const registers = [this.registry];
    const counter = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
      new Counter<L>({ name: P + name, help, labelNames, registers });
    const histogram = (name: string, help: string, buckets: number[]) => new Histogram({ name: P + name, help, buckets, registers });
    const gauge = (name: string, help: string) => new Gauge({ name: P + name, help, registers });

    this.requests = counter("requests_total", "HTTP requests answered, by route and status.", ["route", "status"]);
    this.errors = counter("request_errors_total", "Error responses (and mid-stream errors), by error code.", ["code"]);
    this.ttft = histogram("ttft_seconds", "Time from request arrival to the first generated token.", TTFT_BUCKETS);
    this.tpot = histogram("time_per_output_token_seconds", "Mean time between generated tokens after the first, per request.", TPOT_BUCKETS);
    this.e2e = histogram("e2e_request_latency_seconds", "Time from request arrival to the end of generation.", E2E_BUCKETS);
    this.promptTokens = counter("prompt_tokens_total", "Prompt tokens of finished requests.");
    this.generationTokens = counter("generation_tokens_total", "Generated tokens of finished requests.");
    this.adapterLoad = histogram("adapter_load_seconds", "Adapter load latency in the engine.", LOAD_BUCKETS);
    this.engineRestarts = counter("engine_restarts_total", "Times the engine thread died and was restarted.");
    this.gauges = {
      waiting: gauge("requests_waiting", "Requests accepted by the engine and not yet admitted into a batch."),
      running: gauge("sequences_running", "Sequences admitted into batches (holding KV blocks)."),
      kvUsed: gauge("kv_blocks_used", "KV cache blocks in use."),
      kvFree: gauge("kv_blocks_free", "KV cache blocks free."),
      resident: gauge("adapters_resident", "Adapters resident in host memory."),
      residentBytes: gauge("adapter_resident_bytes", "Bytes of resident adapters."),
      budgetBytes: gauge("adapter_budget_bytes", "Adapter memory budget in bytes."),
      registered: gauge("adapters_registered", "Adapters registered."),
    };
    const mirror = (name: string, help: string, read: (s: EngineStats) => number): Mirrored => ({ counter: counter(name, help), last: 0, read });
    this.mirrored = {
      loads: mirror("adapter_loads_total", "Adapter loads into host memory.", (s) => s.adapters.loads),
      evictions: mirror("adapter_evictions_total", "Adapter evictions from host memory.", (s) => s.adapters.evictions),
      hits: mirror("adapter_cache_hits_total", "Requests whose adapters were resident.", (s) => s.adapters.hits),
      misses: mirror("adapter_cache_misses_total", "Requests that had to wait for an adapter load.", (s) => s.adapters.misses),
      failures: mirror("adapter_load_failures_total", "Adapter loads that failed.", (s) => s.adapters.failures),
      preemptions: mirror("preemptions_total", "Sequences preempted to free KV blocks.", (s) => s.preemptions),
    };
  }

  /**
   * One stats() call per scrape, before rendering: stats() hands out newLoadLatenciesMs only
   * once, so per-metric collect() callbacks each calling it would lose latencies.
   */
  /** A node on a chain (src/chain/node.ts): how far it followed, what it posted, how often a round failed. */
  refreshChain(s: { followedBlock: string | null; lastEpochPosted: number | null; pendingEpochs: number; failedRounds: number }): void {
    if (!this.chain) {
      const registers = [this.registry];
      this.chain = {
        followed: new Gauge({ name: `${P}chain_followed_block`, help: "The last chain block whose logs the node applied.", registers }),
        posted: new Gauge({ name: `${P}chain_last_epoch_posted`, help: "The node's last epoch on chain.", registers }),
        pending: new Gauge({ name: `${P}chain_pending_epochs`, help: "Sealed epochs not yet posted.", registers }),
        failures: new Counter({ name: `${P}chain_round_failures_total`, help: "Follow/close/post rounds that failed (retried with backoff).", registers }),
        lastFailures: 0,
      };
    }
    const c = this.chain;
    c.followed.set(Number(s.followedBlock ?? 0));
    c.posted.set(s.lastEpochPosted ?? 0);
    c.pending.set(s.pendingEpochs);
    if (s.failedRounds > c.lastFailures) c.failures.inc(s.failedRounds - c.lastFailures);
    c.lastFailures = s.failedRounds;
  }

  async refresh(engine: EngineHandle | undefined): Promise<void> {
    if (!engine) return;
    // Before stats(): a restarting engine cannot answer it, and the restart is worth showing.
    const restarts = engine.restarts ?? 0;
    if (restarts > this.lastRestarts) this.engineRestarts.inc(restarts - this.lastRestarts);
    this.lastRestarts = restarts;
    const s = await engine.stats();
    const g = this.gauges;
    g.waiting.set(s.waiting);
    g.running.set(s.running);
    g.kvUsed.set(s.kvBlocksUsed);
    g.kvFree.set(s.kvBlocksFree);
    g.resident.set(s.adapters.resident);
    g.residentBytes.set(s.adapters.residentBytes);
    g.budgetBytes.set(s.adapters.budgetBytes);
    g.registered.set(s.adapters.registered);
    for (const m of Object.values(this.mirrored)) {
      const v = m.read(s);
      // A smaller value means a new engine whose counters restarted from zero.
      const delta = v >= m.last ? v - m.last : v;
      if (delta > 0) m.counter.inc(delta);
      m.last = v;
    }
    for (const ms of s.newLoadLatenciesMs) this.adapterLoad.observe(ms / 1000);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
