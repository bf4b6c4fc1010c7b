import { createRequire } from 'node:module';

// Node built-ins that bring other modules with them are required on first use, not at the top of
// a module: child_process loads net, dgram and the stream modules (about 9 ms), tty loads net.
// Every VM event starts this program several times, and most starts need neither.

// Made on first use: a startup snapshot must not hold a require function from its build.
let require: NodeJS.Require | undefined;
const builtin = <T>(id: string): T => {
  require ??= createRequire(import.meta.url);
  return require(id) as T;
};

export const childProcess = (): typeof import('node:child_process') => builtin('node:child_process');
export const tty = (): typeof import('node:tty') => builtin('node:tty');
export const net = (): typeof import('node:net') => builtin('node:net');
