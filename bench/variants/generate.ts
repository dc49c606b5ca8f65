/**
 * Derives the benchmark-only workflow variant "regular-activities" from the current workflows/
 * (so it follows the shipped code as that changes): the workflows as they were before the control
 * plane's forward steps became local activities (commit after 570db4e), i.e. every step a regular
 * activity on the control queue. The benchmark runs it next to the shipped code to show what the
 * change bought. Run by bench/run.ts at start; alone: `node --import tsx bench/variants/generate.ts`
 * (it also prints the patch that would take the shipped workflows back).
 *
 * EDITS lists each change as [before, shipped]; the variant applies them from shipped to before.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const outDir = path.join(root, 'bench', 'variants', 'regular-activities');

type Edit = [from: string, to: string];

const EDITS: Record<string, Edit[]> = {
  'activity-options.ts': [
    [
      "import { proxyActivities, type ActivityOptions } from '@temporalio/workflow';",
      "import { proxyActivities, proxyLocalActivities, type ActivityOptions, type LocalActivityOptions } from '@temporalio/workflow';",
    ],
    [
      'export const controlMustFinishActivities = proxyActivities<ControlActivities>(controlMustFinish);\n',
      `export const controlMustFinishActivities = proxyActivities<ControlActivities>(controlMustFinish);

/**
 * The same control-plane steps as local activities of the control worker: they run inside the
 * workflow task that asks for them, with the same timeouts and retry policies, and each result is
 * recorded in history (a MarkerRecorded event) when that task completes. A worker that dies
 * mid-step makes the workflow task time out and the step run again, as a regular activity would be
 * retried; every one of these steps is idempotent (by BDM uuid, attachment id or state check).
 * Only quick database/block-storage steps: waiting, compensations and host steps stay activities.
 */
export const controlLocal = proxyLocalActivities<ControlActivities>(controlForward satisfies LocalActivityOptions);
export const controlMustFinishLocal = proxyLocalActivities<ControlActivities>(controlMustFinish satisfies LocalActivityOptions);

/** Runs started before the control steps became local activities replay with regular activities. */
export function controlSteps(local: boolean) {
  return local ? { control: controlLocal, mustFinish: controlMustFinishLocal } : { control, mustFinish: controlMustFinishActivities };
}
`,
    ],
  ],
  'attach-volume.ts': [
    ['  defineUpdate,\n', '  defineUpdate,\n  patched,\n'],
    [
      'import { control, controlMustFinishActivities as controlUndo, hostActivities, ordering } from',
      'import { controlMustFinishActivities as controlUndo, controlSteps, hostActivities, ordering } from',
    ],
    [
      'export async function attachVolume(input: AttachVolumeInput): Promise<AttachResult> {\n',
      "export async function attachVolume(input: AttachVolumeInput): Promise<AttachResult> {\n  const { control } = controlSteps(patched('control-steps-as-local-activities'));\n",
    ],
  ],
  'detach-volume.ts': [
    ['defineQuery, setHandler,', 'defineQuery, patched, setHandler,'],
    [
      'import { control, controlMustFinishActivities, hostActivities, ordering } from',
      'import { controlMustFinishActivities, controlSteps, hostActivities, ordering } from',
    ],
    [
      'export async function detachVolume(input: DetachVolumeInput): Promise<DetachResult> {\n',
      "export async function detachVolume(input: DetachVolumeInput): Promise<DetachResult> {\n  const { control, mustFinish } = controlSteps(patched('control-steps-as-local-activities'));\n",
    ],
    ["await saga.step('deleteAttachment', DETACH_STEPS.deleteAttachment, () =>\n      controlMustFinishActivities.deleteAttachment(", "await saga.step('deleteAttachment', DETACH_STEPS.deleteAttachment, () =>\n      mustFinish.deleteAttachment("],
    ["await saga.step('destroyBdm', DETACH_STEPS.destroyBdm, () => controlMustFinishActivities.destroyBdm(", "await saga.step('destroyBdm', DETACH_STEPS.destroyBdm, () => mustFinish.destroyBdm("],
  ],
};

/** Returns the patch text; throws when the shipped workflows no longer match the edits. */
export function generateRegularActivitiesVariant(): string {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tether-variant-'));
  try {
    fs.mkdirSync(path.join(tmp, 'a', 'workflows'), { recursive: true });
    fs.mkdirSync(path.join(tmp, 'b', 'workflows'), { recursive: true });
    fs.mkdirSync(outDir, { recursive: true });
    for (const [file, edits] of Object.entries(EDITS)) {
      const original = fs.readFileSync(path.join(root, 'workflows', file), 'utf8');
      let s = original;
      for (const [to, from] of edits) {
        if (!s.includes(from)) throw new Error(`workflows/${file} changed: cannot find ${JSON.stringify(from.slice(0, 80))}`);
        s = s.replace(from, to);
      }
      fs.writeFileSync(path.join(tmp, 'a', 'workflows', file), original);
      fs.writeFileSync(path.join(tmp, 'b', 'workflows', file), s);
      const relocated = s
        .replace(/from '\.\.\/(src|activities)\//g, "from '../../../$1/")
        .replace(/from '\.\/saga\.ts'/g, "from '../../../workflows/saga.ts'");
      fs.writeFileSync(path.join(outDir, file), `// GENERATED by bench/variants/generate.ts from workflows/${file}: do not edit.\n${relocated}`);
    }
    fs.writeFileSync(
      path.join(outDir, 'index.ts'),
      `// GENERATED by bench/variants/generate.ts: the shipped workflows with this folder's attach/detach.
export { attachVolume } from './attach-volume.ts';
export { detachVolume } from './detach-volume.ts';
${fs
  .readFileSync(path.join(root, 'workflows', 'index.ts'), 'utf8')
  .split('\n')
  .filter((l) => l.startsWith('export') && !l.includes('attach-volume') && !l.includes('detach-volume'))
  .map((l) => l.replace("from './", "from '../../../workflows/"))
  .join('\n')}
`,
    );
    let patch = '';
    try {
      execFileSync('diff', ['-ru', 'a/workflows', 'b/workflows'], { cwd: tmp });
    } catch (err) {
      patch = String((err as { stdout?: Buffer }).stdout ?? '');
    }
    return patch.replace(/^(---|\+\+\+) ([ab]\/workflows\/\S+)\t.*$/gm, '$1 $2');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.stdout.write(generateRegularActivitiesVariant());
  process.stdout.write(`\n(wrote ${path.relative(root, outDir)}/)\n`);
}
