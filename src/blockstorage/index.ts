/**
 * Chooses the block storage from configuration: the embedded local volume service (default) or a
 * real Cinder (`TETHER_BLOCK_STORAGE=cinder`, see src/blockstorage/cinder/config.ts).
 */
import type { TetherConfig } from '../config.ts';
import type { Database } from '../db/database.ts';
import type { BlockStorage, VolumeAdmin } from './block-storage.ts';
import { LocalVolumeService } from './local-volume-service.ts';
import { CinderBlockStorage } from './cinder/cinder-block-storage.ts';
import { blockStorageKind, loadCinderConfig } from './cinder/config.ts';
import type { CinderLog } from './cinder/http.ts';
import { VolumeKeyStore } from './volume-key-store.ts';
import { loadVolumeMasterKey, volumeMasterKeyFromEnv } from '../security/volume-master-key.ts';

/** Both implementations also manage volumes (for the CLI); only the local one is served under tether's /v3. */
export type ConfiguredBlockStorage = BlockStorage & VolumeAdmin;

export { blockStorageKind };

type LocalConfig = Pick<TetherConfig, 'volumeDir' | 'availabilityZone'> & { dataDir?: string };

/**
 * The embedded service's key store, its master key from TETHER_VOLUME_KEY or (unset) the dev-mode key
 * file under the data folder; read on first use.
 */
export function volumeKeyStore(config: { dataDir?: string }, env: Record<string, string | undefined> = process.env): VolumeKeyStore {
  volumeMasterKeyFromEnv(env); // a malformed TETHER_VOLUME_KEY stops the process at start, not at the first encrypted volume
  return new VolumeKeyStore(() => loadVolumeMasterKey({ env, ...(config.dataDir ? { dataDir: config.dataDir } : {}) }));
}

function localVolumeService(config: LocalConfig, db: Database, env: Record<string, string | undefined>): LocalVolumeService {
  return new LocalVolumeService(db, { volumeDir: config.volumeDir, availabilityZone: config.availabilityZone, keyStore: volumeKeyStore(config, env) });
}

/**
 * The embedded local volume service. Refuses to run when the environment asks for Cinder, so a
 * process still built on this function cannot silently use the wrong storage: use
 * createConfiguredBlockStorage there.
 */
export function createBlockStorage(config: LocalConfig, db: Database): LocalVolumeService {
  if (blockStorageKind() !== 'local') {
    throw new Error('TETHER_BLOCK_STORAGE=cinder, but this process builds its block storage with createBlockStorage() (local only); it must use createConfiguredBlockStorage()');
  }
  return localVolumeService(config, db, process.env);
}

/** The block storage the environment selects: LocalVolumeService or CinderBlockStorage. */
export function createConfiguredBlockStorage(
  config: LocalConfig,
  db: Database,
  options: { env?: Record<string, string | undefined>; log?: CinderLog } = {},
): LocalVolumeService | CinderBlockStorage {
  const env = options.env ?? process.env;
  if (blockStorageKind(env) === 'cinder') return new CinderBlockStorage(loadCinderConfig(env), options.log ? { log: options.log } : {});
  return localVolumeService(config, db, env);
}
