import fs from 'node:fs';
import pg from 'pg';
import { startEmbeddedPostgres } from './src/stack/embedded-postgres.ts';
import { findFreePort } from './src/stack/free-port.ts';
const dir = fs.mkdtempSync('/tmp/tw/pg-');
const port = await findFreePort();
try { await startEmbeddedPostgres({ dataDir: `${dir}/data`, port, database: 'tether' }); } catch (e) { console.log('EXPECTED', (e as Error).message); }
fs.chmodSync(dir, 0o755);
for (let i = 0; i < 2; i++) {
  const t0 = performance.now();
  const db = await startEmbeddedPostgres({ dataDir: `${dir}/data`, port, database: 'tether' });
  const total = performance.now() - t0;
  const c = new pg.Client(db.url); await c.connect();
  if (i === 0) await c.query('create table t(x int); insert into t values (42)');
  const r = await c.query('select x, current_setting(\'server_encoding\') enc, version() v from t'); await c.end();
  const t1 = performance.now(); await db.stop();
  console.log(db.url, JSON.stringify(db.timings), 'total', Math.round(total), 'stop', Math.round(performance.now() - t1), r.rows[0]);
}
console.log(fs.readdirSync(dir));
