/**
 * The chaos runner's short mode (chaos/run.ts --short, docs/chaos.md) as part of `npm test`: its own
 * stack of separate processes (Temporal dev server on SQLite, embedded PostgreSQL, control plane,
 * compute agent, API), killed and restarted around the steps of attach and detach, a 20 s storm of
 * kills at random moments under an API workload (chaos/storm.ts), plus races, the API fuzzer and the
 * CLI fuzzer. It must end `N passed, 0 failed, N skipped` (the libvirtd kill is skipped, see below) with no
 * leaked resource.
 *
 * It runs as a child process (it SIGKILLs and restarts its own children, and owns its signals), with
 * --no-libvirtd: the system libvirtd is shared with the test files running next to this one, and
 * killing it under them would fail their calls. `npm run chaos -- --short` includes that case.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../src/config.ts';
import { libvirtMissing } from './support/probes.ts';
import { skipTest } from './support/skips.ts';
import type { RunSummary } from '../chaos/report.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'tether-chaos-short-'));
const out = path.join(dir, 'short.json');

let passed = false;
// A failed run keeps its JSON and the processes' logs (logs-<id>/) in the folder for a look.
afterAll(() => {
  if (passed) rmSync(dir, { recursive: true, force: true });
  else console.log(`chaos short-mode results and logs kept in ${dir}`);
});

function runShort(): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'chaos', 'run.ts'), '--short', '--no-libvirtd', '--seed', process.env.TETHER_CHAOS_SEED ?? '1', '--out', out], {
      cwd: projectRoot,
      // The runner starts its own Temporal and gives its processes their own settings; DATABASE_URL, when
      // set, makes it use that server (a database of its own, and no PostgreSQL kill).
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    // The runner stops its stack and exits by itself; this is only a backstop against a hang.
    const timer = setTimeout(() => child.kill('SIGTERM'), 420_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('chaos short mode', () => {
  it('every scenario converges with the stores in agreement: "N passed, 0 failed, N skipped", nothing leaked', async (ctx) => {
    const noLibvirt = await libvirtMissing();
    if (noLibvirt) skipTest(ctx, 'libvirt', noLibvirt);
    const { code, output } = await runShort();
    const closing = output.trim().split('\n').at(-1) ?? '';
    expect(closing, output).toMatch(/^\d+ passed, 0 failed, \d+ skipped$/);
    expect(code, output).toBe(0);
    const summary = JSON.parse(readFileSync(out, 'utf8')) as RunSummary;
    expect(summary.failed, output).toBe(0);
    expect(summary.passed).toBeGreaterThanOrEqual(15);
    // only the libvirtd kill, which --no-libvirtd leaves out
    expect(summary.skippedCases, output).toEqual([expect.stringMatching(/^kill .* libvirtd: not killed \(--no-libvirtd\)$/)]);
    expect(summary.results.reduce((n, r) => n + r.leaked, 0), output).toBe(0);
    expect(summary.results.filter((r) => !r.converged && !r.skipped).map((r) => r.scenario), output).toEqual([]);
    passed = true;
  }, 480_000);
});
