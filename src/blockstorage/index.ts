/** Chooses the block storage from configuration: the embedded local volume service (default). */
import type { TetherConfig } from '../config.ts';
import type { Database } from '../db/database.ts';
import { LocalVolumeService } from './local-volume-service.ts';

export function createBlockStorage(config: Pick<TetherConfig, 'volumeDir' | 'availabilityZone'>, db: Database): LocalVolumeService {
  return new LocalVolumeService(db, { volumeDir: config.volumeDir, availabilityZone: config.availabilityZone });
}
