/**
 * The ImportServer workflow's contract (workflows/import-server.ts): `tether server import DOMAIN
 * --host H` takes a libvirt domain that runs on H without tether into tether, without restarting it:
 * an instance (its uuid the domain's), a BDM and a block-storage attachment for each disk whose
 * serial is a volume of the block storage; other disks are left alone and reported.
 */
import { defineQuery } from '@temporalio/workflow';
import { PROGRESS_QUERY, type OperationProgress } from './operation.ts';

export const IMPORT_SERVER_WORKFLOW = 'importServer';

export interface ImportServerInput {
  /** The domain's name or UUID on the host. */
  domain: string;
  host: string;
  projectId: string;
  availabilityZone: string;
  /** The server's name (default: the domain's). */
  name: string | null;
}

export interface AdoptedDisk {
  volumeId: string;
  device: string;
  attachmentId: string;
}

export interface LeftAloneDisk {
  target: string;
  source: string | null;
  serial: string | null;
  /** Why tether does not manage it. */
  reason: string;
}

export interface ImportResult {
  instanceUuid: string;
  name: string;
  host: string;
  vmState: 'active' | 'stopped';
  /** The server was imported before (this run only adopted what was left). */
  alreadyImported: boolean;
  adopted: AdoptedDisk[];
  leftAlone: LeftAloneDisk[];
}

export type ImportServerWorkflow = (input: ImportServerInput) => Promise<ImportResult>;

export const importProgressQuery = defineQuery<OperationProgress>(PROGRESS_QUERY);

export function importWorkflowId(host: string, domain: string): string {
  return `import-server-${host}-${domain}`;
}

export const IMPORT_STEPS = {
  inspectDomain: "Read the domain and its disks on its host (the host's connector with them)",
  planImport: 'Match its disks to volumes of the block storage (by serial); the others are left alone',
  registerInstance: 'Register the instance (its uuid the domain\'s, its state the domain\'s)',
  adoptVolume: 'Record the volume\'s attachment at the block storage and its block device mapping',
} as const;

export const IMPORT_COMPENSATIONS = {
  forgetInstance: 'Remove the instance row the import registered',
  releaseVolume: "Remove the volume's block device mapping and attachment (the disk stays in the domain)",
} as const;
