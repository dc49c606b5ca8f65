import { startTemporalDevServer } from '../../src/stack/temporal-dev-server.ts';
import { findFreePort } from '../../src/stack/free-port.ts';
import { loadConfig } from '../../src/config.ts';
import { execFileSync } from 'node:child_process';
const config = loadConfig();
const s = await startTemporalDevServer({ binary: config.temporalBinary, port: await findFreePort(), logFile: '/tmp/bench-scratch-temporal.log' });
console.log('pid', s.pid, s.address);
console.log(execFileSync('ss', ['-ltnp']).toString().split('\n').filter((l) => l.includes(`pid=${s.pid},`)).join('\n'));
await s.stop();
