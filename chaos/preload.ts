/**
 * Loaded into the worker processes the chaos runner starts (`node --import tsx --import
 * ./chaos/preload.ts workers/<x>.ts`): installs the pause hook of chaos/pause-hook.ts by wrapping
 * FaultInjector.prototype.check, for as long as src/faults.ts does not call it itself.
 * The wrapper runs before the original check, exactly where the wired call would.
 */
import { FaultInjector } from '../src/faults.ts';
import { chaosPause } from './pause-hook.ts';

const MARK = Symbol.for('tether.chaos.pauseHookInstalled');
const proto = FaultInjector.prototype as FaultInjector & { [MARK]?: boolean };

if (process.env.TETHER_CHAOS_PAUSE && !proto[MARK]) {
  const original = proto.check;
  proto.check = function check(this: FaultInjector, step: string, phase: 'before' | 'after'): void {
    chaosPause(step, phase);
    return original.call(this, step, phase);
  };
  proto[MARK] = true;
}
