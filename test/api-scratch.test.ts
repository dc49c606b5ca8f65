import { it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeFile } from 'node:fs/promises';
import { startTestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { startTestApi, writeCloud } from './support/clouds.ts';

it('runs a stack for manual poking', async () => {
  const stack = await startTestStack();
  await runningServer(stack, 'vm1');
  await volume(stack, 'vol1');
  await volume(stack, 'vol2');
  const api = await startTestApi(stack);
  const cloud = await writeCloud(api.url);
  await writeFile('/tmp/tether-api-dev/env.sh', `export OS_CLIENT_CONFIG_FILE=${cloud.env.OS_CLIENT_CONFIG_FILE} OS_CLOUD=tether API=${api.url}\n`);
  await sleep(Number(process.env.POKE_MS ?? 600_000));
  await api.close();
  await stack.stop();
}, 700_000);
