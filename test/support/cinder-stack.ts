/**
 * The same stack as startTestStack (fresh migrated database on the suite's PostgreSQL, the suite's
 * Temporal dev server, real libvirt, a control-plane worker and a compute agent with unique names)
 * whose block storage is a real Cinder through tether's Cinder client.
 */
import { CinderBlockStorage } from '../../src/blockstorage/cinder/cinder-block-storage.ts';
import type { CinderLog } from '../../src/blockstorage/cinder/http.ts';
import { startTestStack, type TestStack } from './test-stack.ts';
import { startCinder, type CinderHandle, type CinderOptions } from './cinder.ts';

export interface CinderStack extends TestStack<CinderBlockStorage> {
  cinder: CinderHandle;
  /** Every line tether's Cinder client logged (method, path, status, ms). */
  clientLog: string[];
}

/** The shared fixtures (runningServer, volume, storesOf) only use service, db and libvirt. */
export function asTestStack(stack: CinderStack): TestStack {
  return stack as unknown as TestStack;
}

/**
 * `sharedCinder`: a Cinder started by the caller (e.g. shared with a real Nova, test/support/nova.ts);
 * the stack uses it and leaves it running when it stops.
 */
export async function startCinderStack(options: { detachUnplugWaitMs?: number; cinder?: CinderOptions; sharedCinder?: CinderHandle } = {}): Promise<CinderStack> {
  // Cinder (the slow part) starts while the rest is built; it is stopped again if the rest fails.
  const { sharedCinder } = options;
  const cinderStarting = sharedCinder ? Promise.resolve(sharedCinder) : startCinder(options.cinder);
  cinderStarting.catch(() => undefined); // awaited below; no unhandled rejection meanwhile
  const clientLog: string[] = [];
  let cinder: CinderHandle | undefined;
  try {
    const stack = await startTestStack({
      detachUnplugWaitMs: options.detachUnplugWaitMs,
      blockStorage: async () => {
        cinder = await cinderStarting;
        const log: CinderLog = { debug: (obj, msg) => clientLog.push(`${msg} ${JSON.stringify(obj)}`) };
        const blockStorage = new CinderBlockStorage(cinder.config(), { log });
        await blockStorage.check();
        return { blockStorage, volumeDir: cinder.volumeDir, env: cinder.env, stop: async () => (sharedCinder ? undefined : cinder!.stop()) };
      },
    });
    return Object.assign(stack, { cinder: cinder!, clientLog });
  } catch (err) {
    if (!sharedCinder) await (await cinderStarting.catch(() => undefined))?.stop();
    throw err;
  }
}
