import { parseArgs } from 'node:util';
import { UsageError } from '../model/errors.js';

export const USAGE = `usage:
  qemu-hook devices [--root DIR] [--json]
  qemu-hook --simulate <domain> prepare|release [--root DIR] [--config FILE] [--json]
  qemu-hook check [--config FILE] [--root DIR]
  qemu-hook status [--root DIR] [--json]
  qemu-hook recover [--domain NAME] [--dry-run] [--root DIR]
  qemu-hook apply [--vm NAME]... [--dry-run] [--yes] [--config FILE] [--root DIR]
  qemu-hook check --fleet DIR [--config FILE] [--json]   (one config against every snapshot in DIR)
  qemu-hook snapshot [--output FILE] [--redact] [--root DIR|FILE]
  qemu-hook hook <domain> <op> <subop> <extra>     (what /etc/libvirt/hooks/qemu runs)
--root also takes a snapshot (FILE.tar.gz) wherever it takes a folder.
common options: --verbose (stack traces), --help, --version`;

const OPTIONS = {
  simulate: { type: 'string' },
  root: { type: 'string' },
  config: { type: 'string' },
  json: { type: 'boolean' },
  verbose: { type: 'boolean', short: 'v' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
  domain: { type: 'string' },
  vm: { type: 'string', multiple: true },
  'dry-run': { type: 'boolean' },
  yes: { type: 'boolean', short: 'y' },
  // snapshots and fleets (issue 11)
  output: { type: 'string', short: 'o' },
  redact: { type: 'boolean' },
  fleet: { type: 'string' },
} as const;

type OptionName = keyof typeof OPTIONS;

export interface Args {
  readonly command:
    | 'simulate'
    | 'devices'
    | 'check'
    | 'status'
    | 'recover'
    | 'apply'
    | 'snapshot'
    | 'hook'
    | 'redefine'
    | 'help'
    | 'version';
  readonly positionals: readonly string[];
  readonly root: string | null;
  readonly config: string | null;
  readonly json: boolean;
  readonly verbose: boolean;
  readonly domain: string | null;
  readonly vms: readonly string[];
  readonly dryRun: boolean;
  readonly yes: boolean;
  // snapshots and fleets (issue 11)
  readonly output: string | null;
  readonly redact: boolean;
  readonly fleet: string | null;
  /** For --simulate: the domain and event. */
  readonly simulate: { readonly domain: string; readonly event: 'prepare' | 'release' } | null;
}

const ALLOWED: Record<Args['command'], readonly OptionName[]> = {
  simulate: ['simulate', 'root', 'config', 'json'],
  devices: ['root', 'json'],
  check: ['root', 'config', 'json', 'fleet'],
  status: ['root', 'json', 'config'],
  recover: ['root', 'config', 'domain', 'dry-run'],
  apply: ['root', 'config', 'vm', 'dry-run', 'yes'],
  snapshot: ['root', 'config', 'output', 'redact'],
  hook: [],
  redefine: [],
  help: [],
  version: [],
};

export function parseCliArgs(argv: readonly string[]): Args {
  // Hook mode is positional only: a domain may be called "--help" in theory; never parse options there.
  if (argv[0] === 'hook') return { ...base('hook'), positionals: argv.slice(1) };
  // Internal: the detached helper the hook starts after refusing a stale definition.
  if (argv[0] === 'redefine') return { ...base('redefine'), positionals: argv.slice(1) };

  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split('\n')[0]}; see qemu-hook --help`);
  }
  const v = parsed.values;
  const pos = parsed.positionals;
  let command: Args['command'];
  if (v.help) command = 'help';
  else if (v.version) command = 'version';
  else if (v.simulate !== undefined) command = 'simulate';
  else {
    const c = pos[0];
    if (!c) throw new UsageError('no command given; see qemu-hook --help');
    if (!['devices', 'check', 'status', 'recover', 'apply', 'snapshot'].includes(c)) {
      throw new UsageError(`unknown command "${c}"; see qemu-hook --help`);
    }
    command = c as Args['command'];
  }
  for (const name of Object.keys(v) as OptionName[]) {
    if (['verbose', 'help', 'version'].includes(name)) continue;
    if (!ALLOWED[command].includes(name))
      throw new UsageError(
        `--${name} does not apply to ${command === 'simulate' ? '--simulate' : command}; see qemu-hook --help`,
      );
  }

  let simulate: Args['simulate'] = null;
  let positionals = pos.slice(command === 'simulate' ? 0 : 1);
  if (command === 'simulate') {
    const event = pos[0];
    if (!v.simulate)
      throw new UsageError('--simulate needs a domain name: qemu-hook --simulate <domain> prepare');
    if (event !== 'prepare' && event !== 'release') {
      throw new UsageError(
        `--simulate ${v.simulate} needs an event, prepare or release (got ${event ? `"${event}"` : 'none'})`,
      );
    }
    simulate = { domain: v.simulate, event };
    positionals = pos.slice(1);
  }
  if (positionals.length > 0 && command !== 'help' && command !== 'version') {
    throw new UsageError(`unexpected argument "${positionals[0]}"; see qemu-hook --help`);
  }
  return {
    command,
    positionals,
    root: v.root ?? null,
    config: v.config ?? null,
    json: v.json ?? false,
    verbose: v.verbose ?? false,
    domain: v.domain ?? null,
    vms: v.vm ?? [],
    dryRun: v['dry-run'] ?? false,
    yes: v.yes ?? false,
    output: v.output ?? null,
    redact: v.redact ?? false,
    fleet: v.fleet ?? null,
    simulate,
  };
}

function base(command: Args['command']): Args {
  return {
    command,
    positionals: [],
    root: null,
    config: null,
    json: false,
    verbose: false,
    domain: null,
    vms: [],
    dryRun: false,
    yes: false,
    output: null,
    redact: false,
    fleet: null,
    simulate: null,
  };
}
