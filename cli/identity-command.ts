/**
 * `tether identity hash-password`: the scrypt hash to put in TETHER_IDENTITY_FILE's password_hash.
 * The password is read from standard input (the first line), never from the command line, where
 * other users could see it in the process list.
 */
import type { Command } from 'commander';
import { createInterface } from 'node:readline';

async function readPassword(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write('Password (not echoed): ');
  const rl = createInterface({ input: process.stdin, terminal: false });
  if (process.stdin.isTTY) process.stdin.setRawMode?.(false);
  for await (const line of rl) {
    rl.close();
    return line.replace(/\r$/, '');
  }
  return '';
}

export function registerIdentityCommands(program: Command): void {
  const identity = program.command('identity').description("tether's own identity (TETHER_AUTH=keystone): users and projects in TETHER_IDENTITY_FILE");
  identity
    .command('hash-password')
    .description('read a password from standard input (first line) and print its scrypt hash for password_hash')
    .action(async () => {
      const password = await readPassword();
      if (password === '') {
        process.stderr.write('error: no password on standard input\n');
        process.exitCode = 2;
        return;
      }
      const { hashPassword } = await import('../src/auth/password-hash.ts');
      process.stdout.write(`${await hashPassword(password)}\n`);
    });
}
