/**
 * The compiled CLI (scripts/build-cli.js, dist/cli) is the same program as its TypeScript source:
 * the same help, usage errors and exit codes; bin/tether.js never runs a stale build (it rebuilds
 * when a source changed); and its start-up loads nothing heavy (no Temporal, pg, libvirt, tracing
 * module is a static import of the entry). No stack needed.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCli, buildDir, freshEntry } from '../../scripts/build-cli.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = path.join(root, 'bin', 'tether.js');

function tether(args: string[], source: boolean) {
  const env = { ...process.env, TETHER_CLI_SOURCE: source ? '1' : '0' };
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, env, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('the compiled CLI', () => {
  let entry: string;
  beforeAll(async () => {
    entry = freshEntry(root) ?? (await buildCli(root));
  }, 60_000);

  it.each([
    [['--help']],
    [['server', 'list', '--help']],
    [['volume', 'create', '--help']],
    [[]],
    [['no-such-command']],
    [['attach', 'only-one-argument']],
    [['operations', '--limit', 'x']],
  ])('prints what the source prints and exits alike: tether %j', (args) => {
    const compiled = tether(args, false);
    const source = tether(args, true);
    expect(compiled).toEqual(source);
    expect(compiled.stdout + compiled.stderr).toMatch(/Usage: tether|error:/);
  });

  it('is fresh after a run of bin/tether.js, built from every file of cli/', () => {
    expect(tether(['--help'], false).status).toBe(0);
    const current = freshEntry(root);
    expect(current).toBeDefined();
    const manifest = JSON.parse(fs.readFileSync(path.join(buildDir(root), 'build.json'), 'utf8')) as { inputs: Record<string, unknown> };
    const cliFiles = fs.readdirSync(path.join(root, 'cli')).filter((f) => f.endsWith('.ts')).map((f) => `cli/${f}`);
    expect(Object.keys(manifest.inputs)).toEqual(expect.arrayContaining([...cliFiles, 'src/service/tether-service.ts']));
  });

  it('--help loads only commander and node builtins: the connections are imported when a command runs', () => {
    const seen = new Set<string>();
    const external = new Set<string>();
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = fs.readFileSync(file, 'utf8');
      // static imports only (a dynamic import() is loaded when its command runs)
      for (const m of text.matchAll(/^(?:import|export)\s[^;]*?from\s*"([^"]+)";/gm)) {
        const spec = m[1]!;
        if (spec.startsWith('.')) visit(path.resolve(path.dirname(file), spec));
        else external.add(spec);
      }
      for (const m of text.matchAll(/^import\s*"([^"]+)";/gm)) if (!m[1]!.startsWith('.')) external.add(m[1]!);
    };
    visit(entry);
    expect([...external].filter((s) => !s.startsWith('node:')).sort()).toEqual(['commander']);
    expect(fs.readFileSync(entry, 'utf8')).toMatch(/import\("\.\/context-[A-Z0-9]+\.js"\)/);
  });
});

describe('freshEntry (whether bin/tether.js may load the build)', () => {
  const makeRoot = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tether-cli-build-'));
    fs.mkdirSync(path.join(dir, 'cli'));
    fs.writeFileSync(path.join(dir, 'cli', 'a.ts'), 'export const a = 1;\n');
    fs.mkdirSync(path.join(dir, 'dist', 'cli', 'b-1'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'dist', 'cli', 'b-1', 'tether.js'), '');
    const st = fs.statSync(path.join(dir, 'cli', 'a.ts'));
    const manifest = { version: 1, entry: 'b-1/tether.js', inputs: { 'cli/a.ts': { size: st.size, mtimeMs: st.mtimeMs } } };
    fs.writeFileSync(path.join(dir, 'dist', 'cli', 'build.json'), JSON.stringify(manifest));
    return dir;
  };

  it('is the entry while every source is as built', () => {
    const dir = makeRoot();
    expect(freshEntry(dir)).toBe(path.join(dir, 'dist', 'cli', 'b-1', 'tether.js'));
  });

  it('is undefined once a source changed, went away, or the build is missing', () => {
    const changed = makeRoot();
    fs.writeFileSync(path.join(changed, 'cli', 'a.ts'), 'export const a = 2;\n');
    expect(freshEntry(changed)).toBeUndefined();

    const touched = makeRoot();
    const later = new Date(Date.now() + 5_000);
    fs.utimesSync(path.join(touched, 'cli', 'a.ts'), later, later);
    expect(freshEntry(touched)).toBeUndefined();

    const gone = makeRoot();
    fs.rmSync(path.join(gone, 'cli', 'a.ts'));
    expect(freshEntry(gone)).toBeUndefined();

    const noBuild = makeRoot();
    fs.rmSync(path.join(noBuild, 'dist', 'cli', 'b-1'), { recursive: true });
    expect(freshEntry(noBuild)).toBeUndefined();
  });
});
