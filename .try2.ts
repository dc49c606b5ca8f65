import net from 'node:net';
import { startTemporalDevServer } from './src/stack/temporal-dev-server.ts';
const bin = '/root/.cache/tether/bin/temporal-1.5.1/temporal';
const log = (...a: unknown[]) => console.log(new Date().toISOString().slice(11, 23), ...a);
try { await startTemporalDevServer({ binary: '/nope/temporal', port: 1 }); } catch (e) { log('ERR1', (e as Error).message.slice(0, 60)); }
const srv = net.createServer().listen(47999, '127.0.0.1');
try { await startTemporalDevServer({ binary: bin, port: 47999 }); } catch (e) { log('ERR2', (e as Error).message.slice(0, 60)); }
srv.close();
if (process.argv[2] === 'orphan') {
  const s = await startTemporalDevServer({ binary: bin, port: 47998, dbFile: '/tmp/tw/o.db' });
  log('started', s.pid); process.kill(process.pid, 'SIGKILL');
}
if (process.argv[2] === 'again') {
  const t0 = performance.now();
  const s = await startTemporalDevServer({ binary: bin, port: 47998, dbFile: '/tmp/tw/o.db' });
  log('restarted over orphan', s.pid, Math.round(performance.now() - t0), 'ms'); await s.stop(); log('stopped');
}
