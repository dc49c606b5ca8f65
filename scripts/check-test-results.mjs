// Exit status of `npm test` from vitest's JSON report: vitest's own exit code is lost here (a library
// hook in the global setup ends the process with 0), so the report decides. Prints the plain summary line.
import { readFileSync } from 'node:fs';
const report = JSON.parse(readFileSync(process.argv[2] ?? '.data/test-results.json', 'utf8'));
const passed = report.numPassedTests ?? 0;
const failed = (report.numFailedTests ?? 0) + (report.numRuntimeErrorTestSuites ?? 0);
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed === 0 && report.success !== false && passed > 0 ? 0 : 1);
