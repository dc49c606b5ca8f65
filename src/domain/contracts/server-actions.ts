/**
 * The server workflows' contracts (workflows/create-server.ts, workflows/server-lifecycle.ts): their
 * names, inputs and results. Each server action takes the instance's task_state while it runs.
 */
import type { VmState } from '../types.ts';

export interface CreateServerInput {
  instanceUuid: string;
  domainName: string;
  host: string;
}

export interface ServerActionInput {
  instanceUuid: string;
  /** The compute host the instance is on (or goes to, for unshelve). */
  host: string | null;
}

export type ShelveInput = ServerActionInput & { vmState: VmState };
export type UnshelveInput = ServerActionInput & { host: string };
export type MigrateInput = ServerActionInput & { targetHost: string; vmState: VmState };

export interface UnshelveResult {
  devices: Record<string, string>;
}

export interface DeleteServerResult {
  deletedVolumes: string[];
}

export interface MigrateResult {
  host: string;
}

/** The server action workflows by name, with their input and result. */
export interface ServerActions {
  shelveServer: { input: ShelveInput; result: void };
  shelveOffloadServer: { input: ServerActionInput; result: void };
  unshelveServer: { input: UnshelveInput; result: UnshelveResult };
  deleteServer: { input: ServerActionInput; result: DeleteServerResult };
  migrateServer: { input: MigrateInput; result: MigrateResult };
}

export type ServerAction = keyof ServerActions;
