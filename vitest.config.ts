import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/global-setup.ts'],
    // vitest's own summary, then ours: every skipped test with its reason and `N passed, N failed, N skipped`.
    reporters: ['default', './test/support/summary-reporter.ts'],
    // Temporal's native core (Rust, via N-API) misbehaves in worker threads: use processes.
    pool: 'forks',
    // Test files run in parallel, two at a time (these machines have 2 cores).
    fileParallelism: true,
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
