// Builds dist/: one ESM bundle for the CLI with a chunk per command, loaded on demand.
// Why a bundle: every VM event starts this program; Node 20 resolves and links each ESM file
// separately, and zod, yaml and xmldom come as hundreds of files. tsc stays the type checker
// (npm run typecheck); esbuild only strips types and joins files.
//
// Paths that code computes from import.meta.url keep working because chunks sit at the same
// depth below the repository as the sources they came from (dist/cli/chunks ~ src/host/libvirt).
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true });
await build({
  entryPoints: ['src/cli/main.ts'],
  outdir: 'dist/cli',
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Less text to parse at every start; names stay readable in stack traces (--verbose).
  minify: true,
  keepNames: false,
  legalComments: 'none',
  logLevel: 'warning',
  // pino and xpath are CommonJS; give them a require() inside the ESM bundle.
  banner: {
    js: "import { createRequire as __qhRequire } from 'node:module'; const require = __qhRequire(import.meta.url);",
  },
});
