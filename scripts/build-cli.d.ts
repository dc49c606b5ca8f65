/** Types of scripts/build-cli.js (plain JavaScript: bin/tether.js loads it without tsx). */
export function buildDir(root?: string): string;
export function freshEntry(root?: string): string | undefined;
export function buildCli(root?: string): Promise<string>;
