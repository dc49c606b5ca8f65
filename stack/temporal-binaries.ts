/**
 * Where scripts/build-temporal.sh puts what it builds from the Go module proxy (a cache outside the
 * clone, ${TETHER_CACHE_DIR:-~/.cache/tether}/bin/), or the binaries the environment names instead.
 */
import path from 'node:path';
import { TEMPORAL_CLI_VERSION, temporalCacheDir } from '../src/config.ts';

/** The server version the cluster mode runs (the one inside CLI v1.5.1). */
export const TEMPORAL_SERVER_VERSION = '1.29.1';

/** The Temporal CLI: its dev server and `temporal operator …` (TETHER_TEMPORAL_BIN to use another). */
export function temporalCliBinary(): string {
  return process.env.TETHER_TEMPORAL_BIN || path.join(temporalCacheDir(), 'bin', `temporal-${TEMPORAL_CLI_VERSION}`, 'temporal');
}

/** The multi-service server and its SQL schema tool, side by side (TETHER_TEMPORAL_SERVER_BIN to use another server). */
export function temporalServerBinaries(): { server: string; sqlTool: string } {
  const server = process.env.TETHER_TEMPORAL_SERVER_BIN || path.join(temporalCacheDir(), 'bin', `temporal-server-${TEMPORAL_SERVER_VERSION}`, 'temporal-server');
  return { server, sqlTool: path.join(path.dirname(server), 'temporal-sql-tool') };
}
