// Loaded with `node --import tsx --import ./chaos/preload.mjs workers/<x>.ts` by the chaos runner.
// Plain JavaScript on purpose: Node runs --import modules in every worker thread too (Temporal's
// workflow threads), before tsx can load TypeScript there. The hook matters in the main thread only,
// where the activities run.
import { isMainThread } from 'node:worker_threads';

if (isMainThread && process.env.TETHER_CHAOS_PAUSE) await import('./preload.ts');
