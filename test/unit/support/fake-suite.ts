/**
 * The suite a workflow unit test runs in: Temporal's time-skipping test environment and tether's
 * fake workers (every activity a fake the test can steer), started before the enclosing suite's
 * tests and stopped after them. `suite.env` and `suite.workers` are set once beforeAll has run.
 */
import { afterAll, beforeAll } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { FakeWorkers, startWorkflowEnvironment } from './workflow-env.ts';
import { tetherFakes } from './fakes.ts';

export interface FakeSuite {
  env: TestWorkflowEnvironment;
  workers: FakeWorkers;
}

export function useFakeWorkers(): FakeSuite {
  const suite = {} as FakeSuite;
  beforeAll(async () => {
    suite.env = await startWorkflowEnvironment();
    suite.workers = await new FakeWorkers(suite.env).start(tetherFakes().names);
  }, 60_000);
  afterAll(async () => {
    await suite.workers?.stop();
    await suite.env?.teardown();
  });
  return suite;
}
