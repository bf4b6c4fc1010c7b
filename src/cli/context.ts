import { resolve } from 'node:path';
import { defaultConfig, requireConfig } from '../config/load.js';
import type { Config } from '../config/model.js';
import { trustedPaths, trustedUid, trustProblems } from '../host/trust.js';
import { TrustError, UsageError } from '../model/errors.js';
import { type HostPaths, hostPaths, underRoot } from '../model/paths.js';
import type { Args } from './args.js';
import { interactive, writeErr, writeOut } from './output.js';

/** What every command gets: where the host is, how to print, who we are. The one place reading process.*. */
export interface CliContext {
  readonly args: Args;
  readonly paths: HostPaths;
  /** True with --root: a fixture host; libvirt is never contacted. */
  readonly fixtureRoot: boolean;
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  readonly isRoot: boolean;
  readonly isTty: boolean;
  readonly env: NodeJS.ProcessEnv;
}

export function makeContext(args: Args): CliContext {
  const root = args.root ? resolve(args.root) : '/';
  return {
    args,
    paths: hostPaths(root, args.config ? { configFile: resolve(args.config) } : {}),
    fixtureRoot: args.root !== null,
    out: writeOut,
    err: writeErr,
    isRoot: process.getuid?.() === 0,
    get isTty() {
      return interactive();
    },
    env: process.env,
  };
}

export async function loadConfig(ctx: CliContext): Promise<Config> {
  const { config, warnings } = await requireConfig(ctx.paths.configFile);
  for (const w of warnings) ctx.err(`warning: ${w}`);
  return config;
}

export function stateFileOf(ctx: CliContext, config: Config | null): string {
  return underRoot(ctx.paths.root, (config ?? defaultConfig()).stateFile);
}

export function requireRoot(ctx: CliContext, what: string): void {
  if (!ctx.isRoot && !ctx.fixtureRoot)
    throw new UsageError(`${what} changes the host and needs root: run it with sudo`);
}

/**
 * The config, its folder, the fault-injection file, the state and log folders: owned by root and
 * not writable by group or others, or whoever can change them decides what root does. A command
 * that changes the host refuses (the first problem, with its fix); a reporting command warns.
 */
export function checkTrust(ctx: CliContext, config: Config | null, refuse: boolean): void {
  const cfg = config ?? defaultConfig();
  const problems = trustProblems(
    trustedPaths(ctx.paths, { stateFile: cfg.stateFile, logFile: cfg.log.file }),
    trustedUid(ctx.paths.root),
  );
  if (problems.length === 0) return;
  if (refuse) throw new TrustError(`refused: ${problems[0]}`);
  for (const p of problems) ctx.err(`warning: ${p} (the hook refuses to work until this is fixed)`);
}
