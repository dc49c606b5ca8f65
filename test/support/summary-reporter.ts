/**
 * The closing lines of every vitest run (next to vitest's default reporter): every skipped test with
 * its reason, every failure that is not a failed test (a file that did not load, a hook that threw, an
 * error after the tests), and the plain last line `N passed, N failed, N skipped`.
 *
 * Counting: a test that did not run because its suite failed (a beforeAll that threw) is failed, not
 * skipped; a file or suite error that no test accounts for (an import that threw, an afterAll) counts
 * one, and so does each unhandled error (a rejection after a test, a worker that exited). Under CI=true
 * a skip whose part is not in test/support/optional-skips.ts is failed too, and the run's exit code
 * becomes 1. Every other exit code is vitest's own.
 *
 * A run of the whole suite also leaves its figures in .data/test-run.json (counts, duration, machine,
 * commit); `npm run docs -- --record-test-run` copies them to docs/test-run.json, from which README's
 * test time is generated.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Reporter, SerializedError, TestCase, TestModule, TestSuite, Vitest } from 'vitest/node';
import { OPTIONAL_SKIPS } from './optional-skips.ts';

/** What .data/test-run.json (and, recorded, docs/test-run.json) holds. */
export interface TestRunRecord {
  command: string;
  date: string;
  commit: string;
  durationS: number;
  files: number;
  passed: number;
  failed: number;
  skipped: number;
  ci: boolean;
  machine: { cpus: number; loadStart: number; loadEnd: number };
}

interface Line {
  where: string;
  why: string;
}

const firstLine = (text: string | undefined) => (text ?? '').trim().split('\n')[0] ?? '';

function errorText(errors: readonly { message?: string; name?: string }[] | undefined): string {
  const e = errors?.[0];
  if (!e) return 'failed';
  return firstLine(`${e.name && e.name !== 'Error' ? `${e.name}: ` : ''}${e.message ?? ''}`) || 'failed';
}

export default class SummaryReporter implements Reporter {
  private filtered = false;
  private vitest: Vitest | undefined;
  private readonly started = { at: Date.now(), load: os.loadavg()[0]! };

  onInit(vitest: Vitest): void {
    this.vitest = vitest;
    this.filtered = Boolean(vitest.config.testNamePattern);
  }

  async onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError>): Promise<void> {
    const ci = process.env.CI === 'true' || process.env.CI === '1';
    let passed = 0;
    const failed: Line[] = [];
    const errors: Line[] = [];
    const skipped: Line[] = [];
    const required: Line[] = [];

    const visit = (node: TestModule | TestSuite, failedAbove: string | undefined, moduleId: string) => {
      const own = node.errors();
      const here = node.type === 'module' ? moduleId : `${moduleId} > ${node.fullName}`;
      const broken = own.length > 0 ? `${node.type === 'module' ? 'the file' : `suite "${node.name}"`} failed: ${errorText(own)}` : undefined;
      let accounted = 0;
      for (const child of node.children) {
        if (child.type === 'suite') {
          accounted += visit(child, failedAbove ?? broken, moduleId);
          continue;
        }
        accounted += this.count(child, failedAbove ?? broken, moduleId, ci, { passed: () => passed++, failed, skipped, required });
      }
      if (broken && accounted === 0) errors.push({ where: here, why: broken });
      return accounted + (broken && accounted === 0 ? 1 : 0);
    };
    for (const m of testModules) visit(m, undefined, m.relativeModuleId);
    for (const e of unhandledErrors) errors.push({ where: 'unhandled error', why: errorText([e]) });

    const print = (title: string, lines: Line[]) => {
      if (lines.length === 0) return;
      process.stdout.write(`\n${title} (${lines.length}):\n${lines.map((l) => `  ${l.where} — ${l.why}`).join('\n')}\n`);
    };
    print('Skipped', skipped);
    print('Failed', failed);
    print('Errors outside a test (each counted as one failure)', errors);
    print('Skipped, and under CI=true counted as failed (not in test/support/optional-skips.ts)', required);
    const failures = failed.length + errors.length + required.length;
    process.stdout.write(`\n${passed} passed, ${failures} failed, ${skipped.length} skipped\n`);
    if (required.length > 0) process.exitCode = 1;
    await this.record(testModules.length, { passed, failed: failures, skipped: skipped.length }, ci).catch(() => undefined);
  }

  /** .data/test-run.json, for a run of every file of the suite only. */
  private async record(files: number, counts: { passed: number; failed: number; skipped: number }, ci: boolean): Promise<void> {
    const vitest = this.vitest;
    if (!vitest || this.filtered) return;
    const all = await vitest.globTestSpecifications();
    if (files !== all.length || !vitest.config.include.includes('test/**/*.test.ts')) return;
    let commit = 'unknown';
    try {
      const git = (...args: string[]) => execFileSync('git', args, { cwd: vitest.config.root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
      commit = `${git('rev-parse', '--short', 'HEAD')}${git('status', '--porcelain', '--untracked-files=no') ? ' (with uncommitted changes)' : ''}`;
    } catch {
      /* not a checkout */
    }
    const round = (x: number) => Math.round(x * 10) / 10;
    const record: TestRunRecord = {
      command: 'npm test',
      date: new Date(this.started.at).toISOString(),
      commit,
      durationS: Math.round((Date.now() - this.started.at) / 1000),
      files,
      ...counts,
      ci,
      machine: { cpus: os.cpus().length, loadStart: round(this.started.load), loadEnd: round(os.loadavg()[0]!) },
    };
    const dir = path.join(vitest.config.root, '.data');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'test-run.json'), `${JSON.stringify(record, null, 2)}\n`);
  }

  /** Classifies one test; returns how many failures it accounts for (for its suite's error). */
  private count(
    test: TestCase,
    failedAbove: string | undefined,
    moduleId: string,
    ci: boolean,
    into: { passed: () => void; failed: Line[]; skipped: Line[]; required: Line[] },
  ): number {
    const r = test.result();
    const where = `${moduleId} > ${test.fullName}`;
    if (r.state === 'passed') {
      into.passed();
      return 0;
    }
    if (r.state === 'failed') {
      into.failed.push({ where, why: errorText(r.errors) });
      return 1;
    }
    if (r.state === 'pending') {
      into.failed.push({ where, why: failedAbove ? `not run: ${failedAbove}` : 'never finished (the run was interrupted or its worker died)' });
      return 1;
    }
    const meta = test.meta().skip;
    const mode = test.options.mode;
    if (!meta && failedAbove) {
      into.failed.push({ where, why: `not run: ${failedAbove}` });
      return 1;
    }
    const reason = meta ? `${meta.part}: ${meta.reason}` : mode === 'todo' ? 'todo' : r.note ?? (this.filtered ? 'not selected (-t)' : 'no reason given (use test/support/skips.ts)');
    if (ci && !(meta && meta.part in OPTIONAL_SKIPS) && !(this.filtered && !meta)) {
      into.required.push({ where, why: reason });
      return 1;
    }
    into.skipped.push({ where, why: reason });
    return 0;
  }
}
