/**
 * Fault injection for tests and the chaos runner: an activity calls `faults.check(step, 'before'|'after')`
 * and fails there when a rule says so. Rules come from the test (in-process workers) or from the
 * TETHER_FAULTS environment variable of a worker process: `step:phase[:times],…`
 * e.g. `attachDisk:after:1`. With no rules (production) a check costs one Map lookup. The chaos runner
 * can also hold a check for a while (TETHER_CHAOS_PAUSE, faults/pause.ts) to kill a process there.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { FaultPoints } from '../activities/fault-points.ts';
import { chaosFail, chaosPause } from './pause.ts';

export type FaultPhase = 'before' | 'after';

interface Rule {
  remaining: number;
  nonRetryable: boolean;
}

export class FaultInjector implements FaultPoints {
  private readonly rules = new Map<string, Rule>();

  static fromEnv(value = process.env.TETHER_FAULTS): FaultInjector {
    const faults = new FaultInjector();
    for (const spec of (value ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
      const [step, phase, times] = spec.split(':');
      if (!step || (phase !== 'before' && phase !== 'after')) throw new Error(`TETHER_FAULTS: bad rule '${spec}' (want step:before|after[:times])`);
      faults.inject(step, phase, { times: times ? Number(times) : Infinity });
    }
    return faults;
  }

  /** Make `step` fail at `phase`, `times` times (default: always), non-retryable unless told otherwise. */
  inject(step: string, phase: FaultPhase, options: { times?: number; nonRetryable?: boolean } = {}): void {
    this.rules.set(`${step}:${phase}`, { remaining: options.times ?? Infinity, nonRetryable: options.nonRetryable ?? true });
  }

  clear(): void {
    this.rules.clear();
  }

  check(step: string, phase: FaultPhase): void {
    chaosPause(step, phase);
    if (chaosFail(step, phase)) throw ApplicationFailure.nonRetryable(`Injected fault ${phase} step ${step} (chaos runner)`, 'InjectedFault');
    const rule = this.rules.get(`${step}:${phase}`);
    if (!rule || rule.remaining <= 0) return;
    rule.remaining -= 1;
    const message = `Injected fault ${phase} step ${step}`;
    throw rule.nonRetryable
      ? ApplicationFailure.nonRetryable(message, 'InjectedFault')
      : ApplicationFailure.retryable(message, 'InjectedFault');
  }
}
