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

/** Both implementations also manage volumes (for the CLI); only the local one is served under tether's /v3. */
export type ConfiguredBlockStorage = BlockStorage & VolumeAdmin;

export { blockStorageKind };

/**
 * The embedded local volume service. Refuses to run when the environment asks for Cinder, so a
 * process still built on this function cannot silently use the wrong storage: use
 * createConfiguredBlockStorage there.
 */
export function createBlockStorage(config: Pick<TetherConfig, 'volumeDir' | 'availabilityZone'>, db: Database): LocalVolumeService {
  if (blockStorageKind() !== 'local') {
    throw new Error('TETHER_BLOCK_STORAGE=cinder, but this process builds its block storage with createBlockStorage() (local only); it must use createConfiguredBlockStorage()');
  }
  return new LocalVolumeService(db, { volumeDir: config.volumeDir, availabilityZone: config.availabilityZone });
}

/** The block storage the environment selects: LocalVolumeService or CinderBlockStorage. */
export function createConfiguredBlockStorage(
  config: Pick<TetherConfig, 'volumeDir' | 'availabilityZone'>,
  db: Database,
  options: { env?: Record<string, string | undefined>; log?: CinderLog } = {},
): LocalVolumeService | CinderBlockStorage {
  const env = options.env ?? process.env;
  if (blockStorageKind(env) === 'cinder') return new CinderBlockStorage(loadCinderConfig(env), options.log ? { log: options.log } : {});
  return new LocalVolumeService(db, { volumeDir: config.volumeDir, availabilityZone: config.availabilityZone });
}
