import { fileURLToPath } from 'node:url';

// Where the running program's code lives: src/host/ in tests, the bundle in dist/ once built. Code
// run from a V8 startup snapshot was loaded at build time, so what import.meta.url says there is
// where the snapshot was built, not where it runs: the snapshot's entry corrects it at start.

let runningFrom: string | null = null;

/** The file the program's code runs from. */
export function programFile(): string {
  return runningFrom ?? fileURLToPath(import.meta.url);
}

/** For the snapshot's entry: the program runs from `file` (beside the snapshot it was started with). */
export function setProgramFile(file: string): void {
  runningFrom = file;
}
