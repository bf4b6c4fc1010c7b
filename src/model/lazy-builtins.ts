import { createRequire } from 'node:module';

// Node built-ins that bring other modules with them are required on first use, not at the top of
// a module: child_process loads net, dgram and the stream modules (about 9 ms), tty loads net.
// Every VM event starts this program several times, and most starts need neither.

const require = createRequire(import.meta.url);

export const childProcess = (): typeof import('node:child_process') => require('node:child_process');
export const tty = (): typeof import('node:tty') => require('node:tty');
