import fs from 'node:fs';
import pg from 'pg';
import { startEmbeddedPostgres } from './src/stack/embedded-postgres.ts';
const dir = '/tmp/tw/pgo'; fs.mkdirSync(dir, { recursive: true }); fs.chmodSync(dir, 0o755);
const mode = process.argv[2];
const t0 = performance.now();
const db = await startEmbeddedPostgres({ dataDir: `${dir}/data`, port: 47996, database: 'tether' });
const c = new pg.Client(db.url); await c.connect(); const r = await c.query('select 1 as one'); await c.end();
console.log(mode, 'ok', r.rows[0], Math.round(performance.now() - t0), 'ms', db.timings);
if (mode === 'orphan') process.kill(process.pid, 'SIGKILL');
await db.stop();
if (mode === 'fakepid') { fs.writeFileSync(`${dir}/data/postmaster.pid`, `1\n${dir}/data\n`); console.log('wrote fake pid 1'); }
