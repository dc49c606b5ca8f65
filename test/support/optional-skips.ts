/**
 * The parts of the suite that may be skipped under CI=true. Every other skip fails a CI run (the
 * summary reporter, test/support/summary-reporter.ts, counts it as failed): a dependency the tests
 * need is installed by `npm test`'s set-up (scripts/setup-tests.sh), so a skip there is a defect.
 *
 * A skip names its part through test/support/skips.ts (`needs(part, missing)`, `skipTest(ctx, part,
 * reason)`); an entry here says why that part may be absent on a CI machine. Keep the list short.
 */
export const OPTIONAL_SKIPS: Readonly<Record<string, string>> = {};
