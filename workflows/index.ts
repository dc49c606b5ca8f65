/** Every workflow the control-plane worker runs. */
export { attachVolume } from './attach-volume.ts';
export { detachVolume } from './detach-volume.ts';
export { extendVolume } from './extend-volume.ts';
export { createServer } from './create-server.ts';
export { shelveServer, shelveOffloadServer, unshelveServer, deleteServer, migrateServer } from './server-lifecycle.ts';
export { forceDetachVolume } from './force-detach-volume.ts';
export { startServer, stopServer, rebootServer } from './server-power.ts';
export { bootServer } from './boot-server.ts';
export { repairVolumePair, repairVolumeStatus, repairQemuOrphans, repairLeakedSecret } from './repair-volume.ts';
export { reconcileVolumes } from './repair-reconcile.ts';
export { swapVolume } from './swap-volume.ts';
export { importServer } from './import-server.ts';
