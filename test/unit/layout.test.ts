/**
 * The rooms of the tree, checked: which folder may import which (README, "Where things live").
 * Reads the import lines of every .ts file; no stack needed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(rel));
    else if (entry.name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

/** The repository-relative files a file imports (relative imports only), with whether the import is type-only. */
function importsOf(file: string): { target: string; typeOnly: boolean }[] {
  const text = fs.readFileSync(path.join(root, file), 'utf8');
  const found: { target: string; typeOnly: boolean }[] = [];
  for (const m of text.matchAll(/^(?:import|export)\s+(type\s+)?[^'";]*?from\s+'(\.[^']+)'/gm)) {
    found.push({ target: path.normalize(path.join(path.dirname(file), m[2]!)), typeOnly: m[1] !== undefined });
  }
  return found;
}

function violations(dir: string, forbidden: (target: string, typeOnly: boolean) => boolean): string[] {
  return filesUnder(dir).flatMap((file) => importsOf(file).filter((i) => forbidden(i.target, i.typeOnly)).map((i) => `${file} → ${i.target}`));
}

const under = (target: string, ...dirs: string[]) => dirs.some((d) => target === d || target.startsWith(`${d}/`));

describe('the layout', () => {
  it('src/ (the product) imports no workflow code, activity, process, tooling or test', () => {
    expect(violations('src', (t) => under(t, 'workflows', 'activities', 'workers', 'cli', 'faults', 'stack', 'chaos', 'bench', 'test'))).toEqual([]);
  });

  it('src/auth is plain policy and identity: no HTTP glue, no service (src/api uses src/auth, never the reverse)', () => {
    expect(violations('src/auth', (t) => under(t, 'src/api', 'src/service'))).toEqual([]);
  });

  it('src/domain depends on nothing else of tether (but its error type)', () => {
    expect(violations('src/domain', (t) => !under(t, 'src/domain') && t !== 'src/errors.ts')).toEqual([]);
  });

  it('workflows import activities as types only, and no process, tooling or I/O module', () => {
    expect(violations('workflows', (t, typeOnly) => (under(t, 'activities') && !typeOnly) || under(t, 'workers', 'faults', 'stack', 'src/db', 'src/api', 'src/service', 'src/libvirt'))).toEqual([]);
  });

  it('no workflow sets activity options of its own: every proxy comes from workflows/activity-options.ts', () => {
    const inventing = filesUnder('workflows')
      .filter((f) => f !== 'workflows/activity-options.ts')
      .filter((f) => /proxy(Local)?Activities\s*[<(]/.test(fs.readFileSync(path.join(root, f), 'utf8')));
    expect(inventing).toEqual([]);
  });

  it('one stack builder: outside stack/, nothing starts Temporal or PostgreSQL but stack/builder.ts (and the tests of those parts themselves)', () => {
    const starts = /(?<!function )\b(startTemporalDevServer|startTemporalCluster|startEmbeddedPostgres)\s*\(/;
    // The parts' own tests, the suite's PostgreSQL process (kept out of vitest's main process) and the
    // scale simulation (it measures Temporal itself).
    const allowed = new Set(['test/stack.test.ts', 'test/temporal-cluster.test.ts', 'test/cluster-topology.test.ts', 'test/compose.test.ts', 'test/setup/postgres-process.ts', 'bench/scale-sim.ts']);
    const assemblies = ['src', 'workers', 'activities', 'workflows', 'cli', 'faults', 'chaos', 'bench', 'test', 'scripts']
      .filter((dir) => fs.existsSync(path.join(root, dir)))
      .flatMap((dir) => filesUnder(dir))
      .filter((f) => !allowed.has(f) && starts.test(fs.readFileSync(path.join(root, f), 'utf8')));
    expect(assemblies).toEqual([]);
    const inStack = filesUnder('stack').filter((f) => starts.test(fs.readFileSync(path.join(root, f), 'utf8')));
    expect(inStack.sort()).toEqual(['stack/postgres.ts', 'stack/temporal.ts']);
  });
});
