// The `qemu-hook` command (dist/cli/main.cjs runs the bundle of this file from V8's code cache).
// No top-level await: the build turns this file into CommonJS (see scripts/build.mjs).
import { runProgram } from './program.js';

runProgram(process.argv.slice(2));
