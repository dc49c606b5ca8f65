/**
 * The `tether` CLI compiled to JavaScript (`npm run build`, run by scripts/setup.sh; bin/tether.js
 * also builds on demand when the build is missing or older than a source it was made from).
 *
 * esbuild (the one tsx ships with) bundles cli/tether.ts and the project's files it imports into
 * dist/cli/<build>/, code-split at every dynamic import(), so that `tether --help` parses only
 * commander and the CLI's definitions; npm packages stay external (loaded from node_modules when a
 * command needs them). dist/cli/build.json names the current build and every source file it was made
 * from with its size and mtime: bin/tether.js compares them before it loads the build.
 *
 * Plain JavaScript on purpose: bin/tether.js uses it without tsx.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const defaultRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Where the builds and their manifest live. */
export function buildDir(root = defaultRoot) {
  return path.join(root, 'dist', 'cli');
}

/**
 * The current build's entry file, or undefined when there is none or one of its sources changed
 * since (a different size or mtime, or gone). Costs a stat per source file (a millisecond or two).
 */
export function freshEntry(root = defaultRoot) {
  let manifest;
  try {
    manifest = JSON.parse(fs.readFileSync(path.join(buildDir(root), 'build.json'), 'utf8'));
  } catch {
    return undefined;
  }
  if (manifest.version !== 1 || typeof manifest.entry !== 'string' || !manifest.inputs) return undefined;
  for (const [file, { size, mtimeMs }] of Object.entries(manifest.inputs)) {
    let st;
    try {
      st = fs.statSync(path.join(root, file));
    } catch {
      return undefined;
    }
    if (st.size !== size || st.mtimeMs !== mtimeMs) return undefined;
  }
  const entry = path.join(buildDir(root), manifest.entry);
  return fs.existsSync(entry) ? entry : undefined;
}

/**
 * Builds the CLI into a new folder under dist/cli and then points dist/cli/build.json at it (a rename,
 * so a concurrent `tether` sees the old build or the new one, never half of one). Older builds are
 * removed once they are an hour old. Returns the entry file.
 */
export async function buildCli(root = defaultRoot) {
  const { build } = await import(esbuildUrl(root));
  const out = buildDir(root);
  const name = `b-${Date.now().toString(36)}-${process.pid}`;
  const outdir = path.join(out, name);
  fs.mkdirSync(outdir, { recursive: true });
  // the sizes and mtimes before the build: a file changed during the build makes the next run rebuild
  const before = new Map();
  const result = await build({
    absWorkingDir: root,
    entryPoints: { tether: 'cli/tether.ts' },
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    metafile: true,
    logLevel: 'silent',
    legalComments: 'none',
    banner: { js: '// Built by scripts/build-cli.js from cli/tether.ts: do not edit (npm run build).' },
    plugins: [sourceLocations(root, outdir, before)],
  });
  const inputs = {};
  for (const file of Object.keys(result.metafile.inputs).sort()) {
    if (file.startsWith('node_modules/')) continue;
    const st = before.get(file) ?? fs.statSync(path.join(root, file));
    inputs[file] = { size: st.size, mtimeMs: st.mtimeMs };
  }
  const manifest = { version: 1, entry: `${name}/tether.js`, builtAt: new Date().toISOString(), inputs };
  const tmp = path.join(out, `build.json.${process.pid}.tmp`);
  fs.writeFileSync(tmp, `${JSON.stringify(manifest, null, 1)}\n`);
  fs.renameSync(tmp, path.join(out, 'build.json'));
  removeOldBuilds(out, name);
  return path.join(outdir, 'tether.js');
}

/** esbuild as tsx depends on it (npm puts it at the top of node_modules; else under tsx's own). */
function esbuildUrl(root) {
  for (const dir of [path.join(root, 'node_modules', 'esbuild'), path.join(root, 'node_modules', 'tsx', 'node_modules', 'esbuild')]) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      const main = JSON.parse(fs.readFileSync(pkg, 'utf8')).main ?? 'lib/main.js';
      return pathToFileURL(path.join(dir, main)).href;
    }
  }
  throw new Error('esbuild (a dependency of tsx) is not installed: run npm ci');
}

/**
 * import.meta.url in a bundled file would name the build's chunk, not the source: each project file
 * that uses it gets the URL of its source instead, relative to the build folder (so that a moved
 * checkout still works). Records each file's size and mtime as it is read.
 */
function sourceLocations(root, outdir, before) {
  return {
    name: 'source-locations',
    setup(b) {
      b.onLoad({ filter: /\.[cm]?ts$/ }, async (args) => {
        const rel = path.relative(root, args.path).split(path.sep).join('/');
        const st = fs.statSync(args.path);
        before.set(rel, st);
        let contents = await fs.promises.readFile(args.path, 'utf8');
        if (contents.includes('import.meta.url')) {
          const fromOut = path.relative(outdir, args.path).split(path.sep).join('/');
          contents = contents.replaceAll('import.meta.url', `new URL(${JSON.stringify(fromOut)}, import.meta.url).href`);
        }
        return { contents, loader: 'ts' };
      });
    },
  };
}

function removeOldBuilds(out, keep) {
  const hourAgo = Date.now() - 3_600_000;
  for (const entry of fs.readdirSync(out, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name === keep || !entry.name.startsWith('b-')) continue;
    const dir = path.join(out, entry.name);
    try {
      if (fs.statSync(dir).mtimeMs < hourAgo) fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      /* another build removed it */
    }
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const entry = await buildCli();
  process.stdout.write(`build: the tether CLI compiled to ${path.relative(process.cwd(), entry)}\n`);
}
