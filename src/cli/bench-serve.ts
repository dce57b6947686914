/**
 * `openlora bench serve`: the serving benchmark (src/bench-serve/). Its arguments are checked here
 * first; the harness itself is imported on demand, because it pulls in the `openai` client and
 * spawns node-llama-cpp, which only a development checkout has.
 */
import { BENCH_SERVE_USAGE, parseServeBenchArgs } from "../bench-serve/args.js";

export { BENCH_SERVE_USAGE };

/** `openlora bench serve …` → exit code. */
export async function runBenchServe(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(BENCH_SERVE_USAGE);
    return 0;
  }
  parseServeBenchArgs(argv); // usage errors before anything heavy is imported
  const { runServeBench } = await import("../bench-serve/run.js");
  return runServeBench(argv);
}
