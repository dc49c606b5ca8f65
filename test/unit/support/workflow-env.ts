/**
 * Workflows alone: the real workflow code on a real Temporal server, with fake activities.
 *
 * The server is Temporal's own test environment (@temporalio/testing). Its time-skipping server is
 * not used: it is a binary that createTimeSkipping() downloads at run time (released only as
 * archives of the Java SDK, in no registry this project may use), and nothing may be downloaded at
 * run time. `TestWorkflowEnvironment.createLocal` runs the dev server that scripts/build-temporal.sh
 * builds from the Go module proxy instead (in memory, with the latency settings of stack/; once per
 * run, test/unit/setup/temporal.ts), or, under `npm test`, the suite's own server; each file
 * connects with createFromExistingServer. The sagas have no timers to skip: fakes fail with
 * non-retryable failures, so there are no retry waits either.
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client';
import { Context } from '@temporalio/activity';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { hostTaskQueue, instanceTaskQueue } from '../../../src/domain/task-queues.ts';
import { TetherState } from '../../../src/temporal/search-attributes.ts';

const workflowsPath = fileURLToPath(new URL('../../../workflows/index.ts', import.meta.url));

let runtimeInstalled = false;

/** The Temporal test environment of the run's global set-up (test/unit/setup/temporal.ts, or the suite's under npm test). */
export async function startWorkflowEnvironment(): Promise<TestWorkflowEnvironment> {
  if (!runtimeInstalled) {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
    runtimeInstalled = true;
  }
  return TestWorkflowEnvironment.createFromExistingServer({ address: inject('temporalAddress') });
}

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/** tether's workflows: bundled by the unit run's global set-up, or once per test file. */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  const file = inject('workflowBundleFile');
  bundle ??= file
    ? fs.promises.readFile(file, 'utf8').then((json) => JSON.parse(json) as WorkflowBundleWithSourceMap)
    : bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger('ERROR') });
  return bundle;
}

type Fn = (...args: never[]) => unknown;

/**
 * Fake activities that record every call (`calls`, in order) and fail where told: a non-retryable
 * failure of tether's fault type, so that the saga moves on at once with the real retry policies.
 */
export class FakeActivities<T extends Record<string, Fn>> {
  /** Every call, in order, with its input. */
  readonly log: { name: string; input: unknown }[] = [];
  private readonly failing = new Map<string, { type: string; times: number }>();

  constructor(private readonly impl: T) {}

  /** Every activity name these fakes answer. */
  get names(): string[] {
    return Object.keys(this.impl);
  }

  /** `name` fails with a non-retryable failure of type `type` (InjectedFault): every time, or its first `times` calls. */
  failAt(name: keyof T & string, options: { type?: string; times?: number } = {}): this {
    this.failing.set(name, { type: options.type ?? 'InjectedFault', times: options.times ?? Infinity });
    return this;
  }

  /** The names of the activities called, in order. */
  get calls(): string[] {
    return this.log.map((c) => c.name);
  }

  /** The activities called after the first call of `name` (after a failing step: the compensations, in the order they ran). */
  callsAfter(name: keyof T & string): string[] {
    return this.calls.slice(this.calls.indexOf(name) + 1);
  }

  /** The input of the last call of `name`. */
  inputOf(name: keyof T & string): unknown {
    return this.log.filter((c) => c.name === name).at(-1)?.input;
  }

  get activities(): T {
    const out: Record<string, Fn> = {};
    for (const [name, fn] of Object.entries(this.impl)) {
      out[name] = async (...args: never[]) => {
        this.log.push({ name, input: args[0] });
        const failure = this.failing.get(name);
        if (failure && failure.times > 0) {
          failure.times -= 1;
          throw ApplicationFailure.nonRetryable(`fake ${name} failed`, failure.type);
        }
        return fn(...args);
      };
    }
    return out as T;
  }
}

/**
 * Workers that serve a test file's workflows for its whole run: the control queue (workflows and
 * control activities, local or not), one instance's queue `instance-<uuid>` and some hosts' queues
 * `host-<name>`. Each workflow gets the fakes registered for its id (`use`), so that tests share
 * the workers (creating and stopping workers per test would cost seconds) but not their fakes.
 */
export class FakeWorkers {
  readonly taskQueue = `unit-${randomUUID()}`;
  readonly instanceUuid = randomUUID();
  private readonly fakes = new Map<string, FakeActivities<Record<string, Fn>>>();
  private workers: Worker[] = [];
  private running: Promise<void>[] = [];

  constructor(
    private readonly env: TestWorkflowEnvironment,
    private readonly hosts: string[] = [],
  ) {}

  /** The activities every worker offers: each call goes to the fakes of the workflow that made it. */
  private router(names: string[]): Record<string, Fn> {
    return Object.fromEntries(
      names.map((name) => [
        name,
        (...args: never[]) => {
          const workflowId = Context.current().info.workflowExecution?.workflowId ?? '';
          const fakes = this.fakes.get(workflowId);
          if (!fakes) throw ApplicationFailure.nonRetryable(`no fakes for workflow ${workflowId}`);
          return fakes.activities[name]!(...args);
        },
      ]),
    );
  }

  async start(names: string[]): Promise<this> {
    const connection = this.env.nativeConnection;
    const activities = this.router(names);
    this.workers = [
      await Worker.create({ connection, taskQueue: this.taskQueue, workflowBundle: await workflowBundle(), activities }),
      await Worker.create({ connection, taskQueue: instanceTaskQueue(this.instanceUuid), activities }),
      ...(await Promise.all(this.hosts.map((host) => Worker.create({ connection, taskQueue: hostTaskQueue(host), activities })))),
    ];
    this.running = this.workers.map((w) => w.run());
    return this;
  }

  /** The fakes that answer the activities of workflow `workflowId`. */
  use<T extends Record<string, Fn>>(workflowId: string, fakes: FakeActivities<T>): FakeActivities<T> {
    this.fakes.set(workflowId, fakes as unknown as FakeActivities<Record<string, Fn>>);
    return fakes;
  }

  /**
   * Runs workflow `type` to its end with `fakes` answering its activities: its result, or the
   * failure it ended with (the cause of WorkflowFailedError), and its handle for queries.
   */
  async run<R, T extends Record<string, Fn> = Record<string, Fn>>(type: string, workflowId: string, fakes: FakeActivities<T>, input: unknown) {
    this.use(workflowId, fakes);
    const handle = await this.env.client.workflow.start(type, { taskQueue: this.taskQueue, workflowId, args: [input] });
    const outcome = await handle.result().then(
      (result: R) => ({ result, failure: null }),
      (err: unknown) => ({ result: null, failure: err instanceof WorkflowFailedError ? (err.cause as ApplicationFailure) : (err as Error) }),
    );
    const state = async () => (await handle.describe()).typedSearchAttributes.get(TetherState);
    return { ...outcome, handle, state };
  }

  async stop(): Promise<void> {
    for (const worker of this.workers) worker.shutdown();
    await Promise.all(this.running);
  }
}
