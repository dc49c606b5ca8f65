/**
 * Every figure of README.md and docs/ that comes from a run is rendered from the run's committed JSON
 * (scripts/generate-docs.ts, `npm run docs`): the committed markdown, results.md and the charts must be
 * exactly what the generator renders from docs/bench/latest.json, docs/chaos/results/*.json and
 * docs/test-run.json. A number edited by hand, or JSON committed without `npm run docs`, fails here.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../src/config.ts';
import { REGIONS, renderDocs } from '../scripts/generate-docs.ts';

describe('generated documentation', () => {
  const rendered = renderDocs(projectRoot);

  it('README.md, docs/chaos.md, docs/bench/README.md and docs/bench/results.md have generated parts', () => {
    expect([...rendered.keys()]).toEqual(expect.arrayContaining(['README.md', 'docs/chaos.md', 'docs/bench/README.md', 'docs/bench/results.md']));
  });

  it.each([...rendered.keys()])('%s is what `npm run docs` renders from the committed JSON', (file) => {
    const committed = fs.readFileSync(path.join(projectRoot, file), 'utf8');
    expect(committed === rendered.get(file), `${file} differs from what \`npm run docs\` renders: run it and commit the result`).toBe(true);
  });

  it('renders every region it knows into the files that name it, and no name is unknown', () => {
    const used = new Set<string>();
    for (const text of rendered.values()) for (const m of text.matchAll(/<!-- generated:([\w-]+) -->/g)) used.add(m[1]!);
    expect([...used].sort()).toEqual(Object.keys(REGIONS).sort());
  });
});
