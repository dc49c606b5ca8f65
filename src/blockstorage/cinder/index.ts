/** The Cinder block storage: `TETHER_BLOCK_STORAGE=cinder` (see config.ts for the variables). */
export { CinderBlockStorage, type CinderBlockStorageOptions, type CinderVolume, type CinderAttachment } from './cinder-block-storage.ts';
export { loadCinderConfig, blockStorageKind, MIN_MICROVERSION, type CinderConfig, type CinderAuthConfig } from './config.ts';
export { CinderUnavailableError, CinderAuthError, CinderVersionError, CinderHttpError, OVER_QUOTA_TYPE, mapCinderError } from './errors.ts';
export type { CinderLog, ServerVersion } from './http.ts';
