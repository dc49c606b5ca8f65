/**
 * The test run's exit code tells the truth: vitest run on the files of test/fixtures/exit-codes/ (kept out
 * of the main suite's include) in a child process, with the suite's own configuration — a failing test,
 * a file that throws while imported, a beforeAll that throws, a worker that calls process.exit(0) or is
 * SIGKILLed, and a rejection nobody handles after the tests each end non-zero; skips pass, with their
 * reasons listed, except under CI=true. The failing test runs with the real global setup (embedded
 * PostgreSQL, whose exit hook once turned vitest's exit code 1 into 0).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../src/config.ts';

interface Run {
  code: number | null;
  output: string;
}

function vitest(fixture: string, env: Record<string, string> = {}): Promise<Run> {
  const childEnv: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    // the child must start its own global setup, and must not think it runs inside vitest
    if (/^(VITEST|TEST$|NODE_ENV$|CI$|DATABASE_URL$|TEMPORAL_ADDRESS$)/.test(k)) continue;
    childEnv[k] = v;
  }
  const child = spawn(
    process.execPath,
    [path.join(projectRoot, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--config', 'test/fixtures/exit-codes/vitest.config.ts', fixture],
    { cwd: projectRoot, env: { ...childEnv, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, output })));
}

const closing = (r: Run) => r.output.trim().split('\n').at(-1);
const noSetup = { EXIT_FIXTURE_GLOBAL_SETUP: 'none' };

describe('exit codes of the test run', { concurrent: true }, () => {
  it('a failing test, with the real global setup: exit 1, "1 passed, 1 failed, 0 skipped"', async () => {
    const r = await vitest('failing.fixture.ts');
    expect(closing(r), r.output).toBe('1 passed, 1 failed, 0 skipped');
    expect(r.output).toMatch(/postgres: embedded at/);
    expect(r.code, r.output).toBe(1);
  }, 180_000);

  it('a file that throws on import, a beforeAll that throws, a crashed worker, an unhandled rejection: each exits non-zero', async () => {
    const [importThrows, hookThrows, processExit, sigkill, rejection] = await Promise.all(
      ['import-throws', 'hook-throws', 'process-exit', 'sigkill', 'unhandled-rejection'].map((f) => vitest(`${f}.fixture.ts`, noSetup)),
    );
    expect(closing(importThrows!), importThrows!.output).toBe('0 passed, 1 failed, 0 skipped');
    expect(importThrows!.output).toMatch(/the file failed: this file throws while it is imported/);
    expect(closing(hookThrows!), hookThrows!.output).toBe('0 passed, 2 failed, 0 skipped');
    expect(hookThrows!.output).toMatch(/not run: suite "a suite whose beforeAll throws" failed: the set-up failed/);
    expect(closing(processExit!), processExit!.output).toBe('0 passed, 1 failed, 0 skipped');
    expect(closing(sigkill!), sigkill!.output).toMatch(/^0 passed, [12] failed, 0 skipped$/);
    expect(closing(rejection!), rejection!.output).toBe('2 passed, 1 failed, 0 skipped');
    expect(rejection!.output).toMatch(/unhandled error — rejected after the test/);
    for (const r of [importThrows, hookThrows, processExit, sigkill, rejection]) expect(r!.code, r!.output).not.toBe(0);
  }, 180_000);

  it('skips are listed with their part and reason and pass; under CI=true they fail the run', async () => {
    const [local, ci] = await Promise.all([vitest('skips.fixture.ts', noSetup), vitest('skips.fixture.ts', { ...noSetup, CI: 'true' })]);
    expect(closing(local!), local!.output).toBe('1 passed, 0 failed, 2 skipped');
    expect(local!.output).toContain('a block whose part is missing > would need it — example-part: no example here (install it with X)');
    expect(local!.output).toContain('finds out at run time — example-part: the example does not answer');
    expect(local!.code, local!.output).toBe(0);
    expect(closing(ci!), ci!.output).toBe('1 passed, 2 failed, 0 skipped');
    expect(ci!.output).toMatch(/under CI=true counted as failed/);
    expect(ci!.code, ci!.output).toBe(1);
  }, 180_000);
});
