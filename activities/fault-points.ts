/**
 * Where an activity may be made to fail or pause: `faults.check(step, 'before' | 'after')` around a
 * step's work. The product only names the points; what happens there is wired by the process
 * (faults/injector.ts: rules from the test or TETHER_FAULTS, the chaos runner's pause points).
 */
export interface FaultPoints {
  check(step: string, phase: 'before' | 'after'): void;
}

