#!/usr/bin/env node
// The `tether` command: the CLI compiled to JavaScript (dist/cli, scripts/build-cli.js), rebuilt here
// first when it is missing or older than one of its sources. Where it cannot be built (a read-only
// checkout), or with TETHER_CLI_SOURCE=1, the TypeScript source runs through tsx: the same program.
import { freshEntry } from '../scripts/build-cli.js';

let entry = process.env.TETHER_CLI_SOURCE === '1' ? undefined : freshEntry();
if (!entry && process.env.TETHER_CLI_SOURCE !== '1') {
  try {
    const { buildCli } = await import('../scripts/build-cli.js');
    entry = await buildCli();
  } catch (err) {
    if (process.env.TETHER_CLI_DEBUG) process.stderr.write(`tether: running the TypeScript source (no build: ${err.message})\n`);
  }
}
if (entry) {
  const { pathToFileURL } = await import('node:url');
  await import(pathToFileURL(entry).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../cli/tether.ts');
}
