/**
 * The server workflows' contracts (workflows/create-server.ts, workflows/server-lifecycle.ts): their
 * names, inputs and results. Each server action takes the instance's task_state while it runs.
 */
import { defineQuery } from '@temporalio/workflow';
import type { VmState } from '../types.ts';
import type { StepProgress } from '../steps.ts';

export interface CreateServerInput {
  instanceUuid: string;
  domainName: string;
  host: string;
}

/** BootServer (workflows/boot-server.ts): the instance and its BDMs are registered, the host named. */
export type BootServerInput = CreateServerInput;

export interface BootProgress {
  state: string;
  steps: StepProgress[];
}

export const bootProgressQuery = defineQuery<BootProgress>('progress');

export interface ServerActionInput {
  instanceUuid: string;
  /** The compute host the instance is on (or goes to, for unshelve). */
  host: string | null;
}

export type ShelveInput = ServerActionInput & { vmState: VmState };
export type UnshelveInput = ServerActionInput & { host: string };
/** Start and stop (workflows/server-power.ts): `vmState` is where a failed step leaves the instance. */
export type PowerInput = ServerActionInput & { vmState: VmState };
export type RebootInput = PowerInput & { type: 'SOFT' | 'HARD' };
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
  startServer: { input: PowerInput; result: void };
  stopServer: { input: PowerInput; result: void };
  rebootServer: { input: RebootInput; result: void };
}

export type ServerAction = keyof ServerActions;
