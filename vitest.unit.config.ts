/**
 * `npm run test:unit`: the fast tests — the workflows alone with fake activities on one Temporal
 * test environment (test/unit/setup/temporal.ts), and the layout rules — without the real stack's
 * global set-up (no PostgreSQL, no libvirt). `npm test` runs these files too, beside the real-stack tests.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
    globalSetup: ['test/unit/setup/temporal.ts'],
    // vitest's own summary, then the suite's: every skipped test with its reason and `N passed, N failed, N skipped`.
    reporters: ['default', './test/support/summary-reporter.ts'],
    // Temporal's native core (Rust, via N-API) misbehaves in worker threads: use processes.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
