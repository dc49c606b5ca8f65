/**
 * The one way a test is skipped: with the part it needs and why that part is missing, so the summary
 * reporter (test/support/summary-reporter.ts) lists every skipped test with its reason, and under CI=true
 * fails the run unless the part is in test/support/optional-skips.ts.
 *
 *   describe('libvirt binding', needs('libvirt', libvirtMissing()), () => { … })   // decided when collected
 *   it('…', async (ctx) => { if (!up) skipTest(ctx, 'rabbitmq', 'no RabbitMQ at …'); … })   // decided at run time
 */
import type { TestContext } from 'vitest';

export interface SkipMeta {
  /** The part the test needs (a key of OPTIONAL_SKIPS when it may be absent in CI), e.g. 'libvirt'. */
  part: string;
  /** Why it is missing here, and what to do about it. */
  reason: string;
}

declare module 'vitest' {
  interface TaskMeta {
    skip?: SkipMeta;
  }
}

/**
 * Options for describe()/it(): nothing when `missing` is null; otherwise the block is skipped, recording
 * `part` and the reason `missing`.
 */
export function needs(part: string, missing: string | null): { skip?: boolean; meta?: { skip: SkipMeta } } {
  return missing === null ? {} : { skip: true, meta: { skip: { part, reason: missing } } };
}

/** Skips the running test, recording `part` and `reason` (for what is only known once the test runs). */
export function skipTest(ctx: TestContext, part: string, reason: string): never {
  ctx.task.meta.skip = { part, reason };
  ctx.skip(reason);
  throw new Error('unreachable: ctx.skip() throws');
}
