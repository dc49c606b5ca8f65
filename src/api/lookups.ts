/**
 * Resolving the ids in a URL through the service layer. A URL names a server or volume by UUID only:
 * clients try GET /servers/{name} first and expect a 404 before they search by name.
 */
import { TetherError } from '../errors.ts';
import { isUuid } from '../service/tether-service.ts';
import type { Instance, Volume } from '../domain/types.ts';

export async function serverById(service: { resolveServer(id: string): Promise<Instance> }, id: string): Promise<Instance> {
  if (!isUuid(id)) throw new TetherError('InstanceNotFound', `Instance ${id} could not be found.`);
  return service.resolveServer(id);
}

export async function volumeById(service: { resolveVolume(id: string): Promise<Volume> }, id: string): Promise<Volume> {
  if (!isUuid(id)) throw new TetherError('VolumeNotFound', `Volume ${id} could not be found.`);
  return service.resolveVolume(id);
}
