/** CreateServer: define and start the instance's domain on its compute host, then mark it active. */
import type { CreateServerInput } from '../src/domain/contracts/server-actions.ts';
import { controlMustFinish, domainActivities } from './activity-options.ts';

export async function createServer(input: CreateServerInput): Promise<{ state: string }> {
  const domains = domainActivities(input.host);
  try {
    const result = await domains.forward.spawnDomain({ instanceUuid: input.instanceUuid, domainName: input.domainName });
    await controlMustFinish.markInstanceActive({ instanceUuid: input.instanceUuid });
    return result;
  } catch (err) {
    await controlMustFinish.markInstanceError({ instanceUuid: input.instanceUuid });
    throw err;
  }
}
