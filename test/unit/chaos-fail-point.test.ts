/**
 * The chaos runner's one-shot failure points (faults/pause.ts): `<dir>/<step>.<phase>.fail` makes the
 * first FaultInjector.check of that point, in any process, throw a non-retryable InjectedFault once
 * — how chaos/compensation-kills.ts makes a saga roll back without restarting a worker.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tether-fail-point-'));
process.env.TETHER_CHAOS_PAUSE = dir;
// read at import: the module takes TETHER_CHAOS_PAUSE once
const { FaultInjector } = await import('../../faults/injector.ts');
const { failPointFile, failedPrefix } = await import('../../faults/pause.ts');

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('chaos failure points', () => {
  it('an armed point fails the first check once, non-retryably, and is claimed by the process', () => {
    const faults = new FaultInjector();
    expect(() => faults.check('completeAttachment', 'before')).not.toThrow();
    fs.writeFileSync(failPointFile(dir, 'completeAttachment', 'before'), '');
    expect(() => faults.check('completeAttachment', 'after')).not.toThrow();
    let thrown: unknown;
    try {
      faults.check('completeAttachment', 'before');
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toMatchObject({ type: 'InjectedFault', nonRetryable: true });
    expect(() => faults.check('completeAttachment', 'before')).not.toThrow();
    expect(fs.readdirSync(dir)).toEqual([`${failedPrefix('completeAttachment', 'before')}${process.pid}`]);
  });
});
