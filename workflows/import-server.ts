/**
 * ImportServer: a libvirt domain that runs without tether becomes a tether server, without a restart.
 *
 *   read the domain and its disks on its host (host-<name>) → match the disks to volumes by serial
 *   → register the instance (uuid = the domain's) → for each matched volume: its attachment and BDM
 *   recorded as the disk already is
 *
 * Nothing touches the domain: its disks stay as they are, those of no known volume are reported.
 * A failure rolls back what the import recorded (BDMs, attachments, the instance row), newest first.
 * Once the instance row exists, the host's compute agent serves its queue: attaches and detaches
 * work on the running domain. The contract is in src/domain/contracts/import-server.ts.
 */
import { setHandler, uuid4, workflowInfo } from '@temporalio/workflow';
import { IMPORT_COMPENSATIONS, IMPORT_STEPS, importProgressQuery, type AdoptedDisk, type ImportResult, type ImportServerInput, type LeftAloneDisk } from '../src/domain/contracts/import-server.ts';
import { controlSteps, domainActivities } from './activity-options.ts';
import { VolumeOperation } from './volume-operation.ts';

export async function importServer(input: ImportServerInput): Promise<ImportResult> {
  const { control, mustFinish } = controlSteps(true);
  const saga = new VolumeOperation('importing');
  setHandler(importProgressQuery, () => saga.progress());
  saga.begin();
  const operationId = workflowInfo().workflowId;
  try {
    const domain = await saga.step('inspectDomain', IMPORT_STEPS.inspectDomain, () => domainActivities(input.host).forward.inspectDomain({ domain: input.domain }));
    const plan = await saga.step('planImport', IMPORT_STEPS.planImport, () => control.planServerImport({ domain, host: input.host, name: input.name }));
    const instanceUuid = plan.instanceUuid;
    if (!plan.alreadyImported) {
      saga.addCompensation({ step: 'forgetInstance', description: IMPORT_COMPENSATIONS.forgetInstance, run: () => mustFinish.forgetImportedInstance({ instanceUuid }) });
    }
    await saga.step('registerInstance', IMPORT_STEPS.registerInstance, () =>
      control.registerImportedInstance({ plan, host: input.host, projectId: input.projectId, availabilityZone: input.availabilityZone, domainName: domain.name }),
    );
    const adopted: AdoptedDisk[] = [];
    const leftAlone: LeftAloneDisk[] = [...plan.leftAlone];
    for (const disk of plan.adopt) {
      const bdmUuid = uuid4();
      saga.addCompensation({
        step: 'releaseVolume',
        description: IMPORT_COMPENSATIONS.releaseVolume,
        run: () => mustFinish.releaseAdoptedVolume({ instanceUuid, bdmUuid, volumeId: disk.volumeId }),
      });
      const r = await saga.step('adoptVolume', IMPORT_STEPS.adoptVolume, () => control.adoptVolume({ operationId, instanceUuid, bdmUuid, disk, connector: domain.connector }));
      if (r.adopted) adopted.push({ volumeId: disk.volumeId, device: `/dev/${disk.target}`, attachmentId: r.attachmentId! });
      else leftAlone.push({ target: disk.target, source: disk.source, serial: disk.volumeId, reason: r.reason ?? 'not adopted' });
    }
    return await saga.succeed('imported', { instanceUuid, name: plan.name, host: input.host, vmState: plan.vmState, alreadyImported: plan.alreadyImported, adopted, leftAlone });
  } catch (err) {
    return saga.fail(err, {
      action: `Importing domain ${input.domain} of host ${input.host}`,
      defaultType: 'InvalidInput',
      rolledBack: 'nothing of it is recorded; the domain runs on as it was',
    });
  }
}
