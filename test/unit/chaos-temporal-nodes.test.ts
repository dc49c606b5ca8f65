/**
 * The --temporal-nodes family's plan (chaos/temporal-node-kills.ts): every point of the kill matrix
 * (attach and detach step × before / during / after) exactly once, the six (signal, target) pairs in
 * turn so each gets the same share; `all` the full product. Names end in `<signal>:<target>`, the
 * word docs/chaos.md's tables group by (time to converge per target).
 */
import { describe, expect, it } from 'vitest';
import { ATTACH_MATRIX_STEPS, DETACH_MATRIX_STEPS, PHASES } from '../../chaos/kills.ts';
import { NODE_SIGNALS, NODE_TARGETS, temporalNodeCaseName, temporalNodeMatrix, workerOfStep } from '../../chaos/temporal-node-kills.ts';

const points = (ATTACH_MATRIX_STEPS.length + DETACH_MATRIX_STEPS.length) * PHASES.length;
const pairs = NODE_SIGNALS.length * NODE_TARGETS.length;

describe('the Temporal-node kill matrix', () => {
  it('hits every step and phase of attach and detach once, each (signal, target) pair an equal share', () => {
    const cases = temporalNodeMatrix();
    expect(cases).toHaveLength(points);
    expect(new Set(cases.map((c) => `${c.op} ${c.step} ${c.phase}`)).size).toBe(points);
    const share = new Map<string, number>();
    for (const c of cases) share.set(`${c.signal}:${c.target}`, (share.get(`${c.signal}:${c.target}`) ?? 0) + 1);
    expect(share.size).toBe(pairs);
    expect(Math.max(...share.values()) - Math.min(...share.values())).toBeLessThanOrEqual(1);
    // both operations see every pair
    for (const op of ['attach', 'detach'] as const) expect(new Set(cases.filter((c) => c.op === op).map((c) => `${c.signal}:${c.target}`)).size).toBe(pairs);
  });

  it('with all: every point with every pair, each name once', () => {
    const names = temporalNodeMatrix({ all: true }).map(temporalNodeCaseName);
    expect(names).toHaveLength(points * pairs);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toContain('kill attach attachDisk during SIGSTOP:frontend-of-worker');
    expect(names.every((n) => /^kill (attach|detach) \w+ (before|during|after) SIG(KILL|STOP):[\w-]+$/.test(n))).toBe(true);
  });

  it('the worker whose frontend is targeted is the one running the step', () => {
    expect(workerOfStep('attachDisk')).toBe('compute-agent');
    expect(workerOfStep('detachDisk')).toBe('compute-agent');
    expect(workerOfStep('getHostConnector')).toBe('compute-agent');
    expect(workerOfStep('reserveVolume')).toBe('control-plane');
    expect(workerOfStep('awaitEarlierOperation')).toBe('control-plane');
  });
});
