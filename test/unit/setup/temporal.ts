/**
 * `npm run test:unit`'s only global set-up: one Temporal test environment for every unit test file
 * (TestWorkflowEnvironment.createLocal on the dev server that scripts/build-temporal.sh builds; see
 * test/unit/support/workflow-env.ts for why not the time-skipping server), and tether's workflows
 * bundled once, while the server starts. Under `npm test` the suite's own global set-up provides
 * the same `temporalAddress`, and each file bundles the workflows itself.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { loadConfig } from '../../../src/config.ts';
import { ComputeHost, InstanceUuid, TetherState, VolumeId } from '../../../src/temporal/search-attributes.ts';

/** The dev server's settings that make a workflow step take milliseconds (stack/temporal-dev-server.ts). */
const DYNAMIC_CONFIG = [
  'history.transferProcessorMaxPollRPS=10000',
  'system.enableActivityEagerExecution=true',
  'matching.numTaskqueueReadPartitions=1',
  'matching.numTaskqueueWritePartitions=1',
];

declare module 'vitest' {
  export interface ProvidedContext {
    /** A file holding tether's workflows bundled once for every unit test file (JSON of a WorkflowBundle). */
    workflowBundleFile?: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const bundling = bundleWorkflowCode({
    workflowsPath: new URL('../../../workflows/index.ts', import.meta.url).pathname,
    logger: new DefaultLogger('ERROR'),
  });
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: loadConfig().temporalBinary },
      searchAttributes: [InstanceUuid, VolumeId, ComputeHost, TetherState],
      extraArgs: DYNAMIC_CONFIG.flatMap((kv) => ['--dynamic-config-value', kv]),
    },
  });
  project.provide('temporalAddress', env.address);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tether-unit-'));
  const file = path.join(dir, 'workflows.json');
  fs.writeFileSync(file, JSON.stringify(await bundling));
  project.provide('workflowBundleFile', file);
  return async () => {
    fs.rmSync(dir, { recursive: true, force: true });
    await env.teardown();
  };
}
