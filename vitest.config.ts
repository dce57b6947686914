import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Rebuilds dist/ and the native addon from the sources first (see the file).
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Kernels use their own native thread pool; running test files in parallel on a
    // 2-core machine only oversubscribes it.
    fileParallelism: false,
    pool: "forks",
  },
});
