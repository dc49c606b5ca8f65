import { it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { existsSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { startTestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { startTestApi, writeCloud } from './support/clouds.ts';

it('runs a stack for manual poking', async () => {
  const stop = '/tmp/tether-api-dev/stop';
  rmSync(stop, { force: true });
  const stack = await startTestStack();
  await runningServer(stack, 'vm1');
  await volume(stack, 'vol1');
  await volume(stack, 'vol2');
  const api = await startTestApi(stack);
  const cloud = await writeCloud(api.url);
  await writeFile('/tmp/tether-api-dev/env.sh', `export OS_CLIENT_CONFIG_FILE=${cloud.env.OS_CLIENT_CONFIG_FILE} OS_CLOUD=tether API=${api.url} PATH=/usr/bin:/bin HOME=/tmp\n`);
  for (let i = 0; i < 1200 && !existsSync(stop); i++) await sleep(500);
  await api.close();
  await stack.stop();
}, 700_000);
