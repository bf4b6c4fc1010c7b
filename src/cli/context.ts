import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { defaultConfig, requireConfig } from '../config/load.js';
import type { Config } from '../config/model.js';
import { hostName } from '../host/hostname.js';
import { trustedPaths, trustedUid, trustProblems } from '../host/trust.js';
import { errorMessage, TrustError, UsageError } from '../model/errors.js';
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
  if (args.root !== null) requireFolder(root, '--root');
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
  const { config, warnings } = await requireConfig(ctx.paths.configFile, { host: hostName(ctx.paths) });
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

/** A --root that is not there would read as an empty host: say so instead. */
function requireFolder(path: string, option: string): void {
  let st: ReturnType<typeof statSync> | undefined;
  try {
    st = statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      code === 'ENOENT' || code === 'ENOTDIR'
        ? `${option} ${path} does not exist: give the folder a host is read from (e.g. fixtures/hosts/workstation)`
        : `${option} ${path} cannot be read (${code ?? errorMessage(err)})`,
    );
  }
  if (!st?.isDirectory())
    throw new UsageError(`${option} ${path} is not a folder: give the folder a host is read from`);
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
