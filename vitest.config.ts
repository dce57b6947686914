import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Kernels use their own native thread pool; running test files in parallel on a
    // 2-core machine only oversubscribes it.
    fileParallelism: false,
    pool: "forks",
  },
});
