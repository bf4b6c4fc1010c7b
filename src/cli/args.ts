import { closest } from '../config/suggest.js';
import { UsageError } from '../model/errors.js';
import {
  COMMANDS,
  COMMON_OPTIONS,
  type CommandName,
  type CommandSpec,
  commandSpec,
  OPTIONS,
  type OptionName,
  type OptionSpec,
} from './spec.js';

// A small parser of our own over the tables in spec.ts rather than node:util's parseArgs: every
// mistake is answered in our words with the closest valid spelling, per command (parseArgs' strict
// mode throws its own text, and reads `--simulate --help` as a value that looks like an option).

export interface Args {
  readonly command: CommandName | 'hook' | 'redefine' | 'serve' | 'version';
  readonly positionals: readonly string[];
  readonly root: string | null;
  readonly config: string | null;
  readonly json: boolean;
  readonly verbose: boolean;
  /** --vm (or --domain), each time given. */
  readonly vms: readonly string[];
  readonly dryRun: boolean;
  readonly yes: boolean;
  readonly groups: boolean;
  readonly follow: boolean;
  // snapshots and fleets (issue 11)
  readonly output: string | null;
  readonly redact: boolean;
  readonly fleet: string | null;
  /** For --simulate: the domain and event. */
  readonly simulate: { readonly domain: string; readonly event: 'prepare' | 'release' } | null;
  /** For help: the command asked about; null for the overview. */
  readonly helpFor: CommandName | null;
  /** For completion: the shell. */
  readonly shell: 'bash' | 'zsh' | null;
}

/** Commands a user types; `simulate` is the --simulate option, internal ones are not listed. */
const TYPED = COMMANDS.filter((c) => c.name !== 'simulate').map((c) => c.name);

/** Words people try that are not ours but name something we do. */
const HINTS: Record<string, string> = {
  simulate: 'qemu-hook --simulate VM prepare|release',
  groups: 'qemu-hook devices --groups',
  iommu: 'qemu-hook devices --groups',
  logs: 'qemu-hook log',
  validate: 'qemu-hook check',
  list: 'qemu-hook devices',
};

interface Given {
  readonly spec: OptionSpec;
  /** As typed, for messages: `--domain`, `-y`. */
  readonly as: string;
  readonly value: string | null;
}

export function parseCliArgs(argv: readonly string[]): Args {
  // Hook mode is positional only: a domain may be called "--help" in theory; never parse options there.
  if (argv[0] === 'hook') return { ...base('hook'), positionals: argv.slice(1) };
  // Internal: the detached helper the hook starts after refusing a stale definition.
  if (argv[0] === 'redefine') return { ...base('redefine'), positionals: argv.slice(1) };
  // Internal: the resident hook (qemu-hook.service), and its workers (serve --worker).
  if (argv[0] === 'serve') return { ...base('serve'), positionals: argv.slice(1) };

  const { given, positionals, unknown } = tokenize(argv);
  const has = (name: OptionName) => given.some((g) => g.spec.name === name);
  const simulateGiven = given.find((g) => g.spec.name === 'simulate');

  // Which command: --simulate, --version, or the first word.
  let command: Args['command'];
  let rest = positionals;
  if (simulateGiven) command = 'simulate';
  else if (has('version') && positionals.length === 0) command = 'version';
  else if (positionals.length === 0) {
    if (!has('help')) {
      if (unknown.length > 0) throw unknownOption(unknown[0]!, null);
      throw new UsageError('no command given; see qemu-hook --help');
    }
    command = 'help';
  } else {
    const word = positionals[0]!;
    rest = positionals.slice(1);
    command = commandNamed(word);
  }

  if (command === 'version') return { ...base('version') };
  const spec = command === 'help' ? commandSpec('help') : commandSpec(command);

  // `<command> --help` (and `--simulate --help`, `--simulate win11 --help`): that command's help,
  // whatever else is on the line.
  if (has('help')) return { ...base('help'), helpFor: command === 'help' ? helpTopic(rest) : command };

  if (unknown.length > 0) throw unknownOption(unknown[0]!, spec);
  for (const g of given) {
    if (g.spec.name === 'verbose') continue;
    if (!spec.options.includes(g.spec.name)) {
      throw new UsageError(`${g.as} does not apply to ${title(spec)}; see ${helpCommand(spec)}`);
    }
  }
  for (const g of given) {
    if (!g.spec.multiple && given.filter((x) => x.spec === g.spec).length > 1)
      throw new UsageError(`${g.as} given more than once; see ${helpCommand(spec)}`);
  }
  const value = (name: OptionName) => given.filter((g) => g.spec.name === name).map((g) => g.value!);

  let simulate: Args['simulate'] = null;
  let helpFor: Args['helpFor'] = null;
  let shell: Args['shell'] = null;
  if (command === 'simulate') {
    const domain = simulateGiven!.value!;
    const event = rest[0];
    if (event !== 'prepare' && event !== 'release') {
      throw new UsageError(
        `--simulate ${domain} needs an event, prepare or release (got ${event ? `"${event}"` : 'none'})`,
      );
    }
    simulate = { domain, event };
    rest = rest.slice(1);
  } else if (command === 'help') {
    helpFor = helpTopic(rest);
    rest = rest.slice(1);
  } else if (command === 'completion') {
    const s = rest[0];
    if (s !== 'bash' && s !== 'zsh')
      throw new UsageError(
        `completion needs a shell, bash or zsh (got ${s ? `"${s}"` : 'none'}): qemu-hook completion bash`,
      );
    shell = s;
    rest = rest.slice(1);
  }
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"; see ${helpCommand(spec)}`);

  const json = has('json');
  if (json && command === 'apply' && !has('dry-run'))
    throw new UsageError(
      '--json goes with apply --dry-run only (apply shows a diff and asks); add --dry-run to see the changes as JSON',
    );

  return {
    command,
    positionals: [],
    root: value('root')[0] ?? null,
    config: value('config')[0] ?? null,
    json,
    verbose: has('verbose'),
    vms: value('vm'),
    dryRun: has('dry-run'),
    yes: has('yes'),
    groups: has('groups'),
    follow: has('follow'),
    output: value('output')[0] ?? null,
    redact: has('redact'),
    fleet: value('fleet')[0] ?? null,
    simulate,
    helpFor,
    shell,
  };
}

/** Options (with their values) and positionals, in our terms; unknown options kept as typed. */
function tokenize(argv: readonly string[]): { given: Given[]; positionals: string[]; unknown: string[] } {
  const given: Given[] = [];
  const positionals: string[] = [];
  const unknown: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    let spec: OptionSpec | undefined;
    let as = a;
    let inline: string | null = null;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      as = `--${name}`;
      if (eq >= 0) inline = a.slice(eq + 1);
      spec = OPTIONS.find((o) => o.name === name || o.aliases?.includes(name));
    } else if (a.startsWith('-') && a.length > 1) {
      // Short flags, also bundled (-vy).
      for (const ch of a.slice(1)) {
        const s = OPTIONS.find((o) => o.short === ch);
        if (!s || s.value) {
          unknown.push(`-${ch}`);
          continue;
        }
        given.push({ spec: s, as: `-${ch}`, value: null });
      }
      continue;
    } else {
      positionals.push(a);
      continue;
    }
    if (!spec) {
      unknown.push(as);
      continue;
    }
    if (!spec.value) {
      if (inline !== null) throw new UsageError(`${as} takes no value (got "${as}=${inline}")`);
      given.push({ spec, as, value: null });
      continue;
    }
    let value = inline;
    if (value === null) {
      const next = argv[i + 1];
      // `--simulate --help`: the help for --simulate, not a domain called "--help".
      if (spec.name === 'simulate' && (next === '--help' || next === '-h')) {
        given.push({ spec, as, value: '' });
        continue;
      }
      if (next === undefined || (next.startsWith('-') && next !== '-'))
        throw new UsageError(`${as} needs a value: ${as} ${spec.value}`);
      value = next;
      i++;
    }
    if (value === '') throw new UsageError(`${as} needs a value: ${as} ${spec.value}`);
    given.push({ spec, as, value });
  }
  return { given, positionals, unknown };
}

function commandNamed(word: string): CommandName {
  if ((TYPED as string[]).includes(word)) return word as CommandName;
  const hint = HINTS[word.toLowerCase()];
  const guess = closest(word, TYPED);
  const also = hint ? `; did you mean ${hint}?` : guess ? `; did you mean ${guess}?` : '';
  throw new UsageError(`unknown command "${word}"${also} (qemu-hook --help lists the commands)`);
}

function helpTopic(rest: readonly string[]): CommandName | null {
  const word = rest[0];
  if (word === undefined) return null;
  if (word === 'simulate' || word === '--simulate') return 'simulate';
  return commandNamed(word);
}

/** Suggestions come from the options of `spec` (all options when the command is not known). */
function unknownOption(as: string, spec: CommandSpec | null): UsageError {
  const pool = spec ? [...new Set([...spec.options, ...COMMON_OPTIONS])] : OPTIONS.map((o) => o.name);
  const names = pool.flatMap((n) => {
    const o = OPTIONS.find((x) => x.name === n)!;
    return [`--${o.name}`, ...(o.aliases ?? []).map((a) => `--${a}`)];
  });
  const guess = closest(as.replace(/^-+/, '--'), names);
  return new UsageError(
    `unknown option ${as}${guess ? `; did you mean ${guess}?` : ''} (${spec ? helpCommand(spec) : 'qemu-hook --help'} lists the options)`,
  );
}

function title(spec: CommandSpec): string {
  return spec.name === 'simulate' ? '--simulate' : spec.name;
}

function helpCommand(spec: CommandSpec): string {
  if (spec.name === 'help') return 'qemu-hook --help';
  return spec.name === 'simulate' ? 'qemu-hook --simulate --help' : `qemu-hook ${spec.name} --help`;
}

function base(command: Args['command']): Args {
  return {
    command,
    positionals: [],
    root: null,
    config: null,
    json: false,
    verbose: false,
    vms: [],
    dryRun: false,
    yes: false,
    groups: false,
    follow: false,
    output: null,
    redact: false,
    fleet: null,
    simulate: null,
    helpFor: null,
    shell: null,
  };
}
