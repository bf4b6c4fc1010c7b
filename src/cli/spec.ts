// What the command line accepts, in one place: the parser (args.ts), `--help`, the man page and the
// shell completions are all made from these tables, so they cannot disagree.

export type OptionName =
  | 'simulate'
  | 'root'
  | 'config'
  | 'json'
  | 'vm'
  | 'dry-run'
  | 'yes'
  | 'groups'
  | 'follow'
  | 'output'
  | 'redact'
  | 'fleet'
  | 'verbose'
  | 'help'
  | 'version';

export interface OptionSpec {
  readonly name: OptionName;
  readonly short?: string;
  /** Other spellings taken as this option (--domain for --vm). */
  readonly aliases?: readonly string[];
  /** The value's placeholder; absent for a flag. */
  readonly value?: string;
  /** What completion offers for the value. */
  readonly complete?: 'dir' | 'file' | 'domain';
  readonly multiple?: boolean;
  readonly help: string;
}

export const OPTIONS: readonly OptionSpec[] = [
  {
    name: 'simulate',
    value: 'VM',
    complete: 'domain',
    help: 'show what the hook would do at this VM event (prepare or release); changes nothing',
  },
  {
    name: 'root',
    value: 'DIR',
    complete: 'dir',
    help: 'read a whole host below DIR (sys/, proc/, etc/, var/: a fixture host); libvirt is never contacted',
  },
  {
    name: 'config',
    value: 'FILE',
    complete: 'file',
    help: 'the config file (default /etc/qemu-hook/config.yaml, below --root if given)',
  },
  { name: 'json', help: 'machine-readable output (JSON) on stdout' },
  {
    name: 'vm',
    aliases: ['domain'],
    value: 'NAME',
    complete: 'domain',
    multiple: true,
    help: 'the libvirt domain (VM) to work on; --domain is the same',
  },
  { name: 'dry-run', help: 'show what would change and change nothing (exit 1 when something would)' },
  {
    name: 'yes',
    short: 'y',
    aliases: ['non-interactive'],
    help: 'do not ask before changing a definition; --non-interactive is the same',
  },
  {
    name: 'groups',
    help: 'the IOMMU groups: each member, whether the group can be passed through, and which VM claims it',
  },
  { name: 'follow', short: 'f', help: 'keep printing new events as the hook writes them (Ctrl-C ends)' },
  // snapshots and fleets (issue 11)
  {
    name: 'output',
    short: 'o',
    value: 'FILE',
    complete: 'file',
    help: 'where to write the snapshot (default: qemu-hook-<host>-<date>.tar.gz here)',
  },
  {
    name: 'redact',
    help: 'replace USB serials, MAC addresses, the hostname and UUIDs with stand-ins, consistently',
  },
  {
    name: 'fleet',
    value: 'DIR',
    complete: 'dir',
    help: 'check the config against every snapshot (*.tar.gz or host folder) in DIR, offline',
  },
  { name: 'verbose', short: 'v', help: 'stack traces with errors' },
  { name: 'help', short: 'h', help: "this command's usage, options and an example" },
  { name: 'version', help: "the program's version" },
];

/** Accepted by every command. */
export const COMMON_OPTIONS: readonly OptionName[] = ['verbose', 'help'];

export type CommandName =
  | 'simulate'
  | 'devices'
  | 'check'
  | 'status'
  | 'recover'
  | 'apply'
  | 'log'
  | 'snapshot'
  | 'help'
  | 'completion'
  | 'man';

export interface CommandSpec {
  readonly name: CommandName;
  /** The synopsis after `qemu-hook `. */
  readonly usage: string;
  readonly summary: string;
  /** More about it, for `--help` and the man page; each string a paragraph. */
  readonly details: readonly string[];
  readonly options: readonly OptionName[];
  readonly examples: readonly string[];
  readonly needsRoot: boolean;
}

export const COMMANDS: readonly CommandSpec[] = [
  {
    name: 'devices',
    usage: 'devices [--groups] [--root DIR] [--config FILE] [--json]',
    summary: 'what the host has: PCI devices (class, ids, names, driver, IOMMU group, SR-IOV), USB devices',
    details: [
      'With --groups: every IOMMU group with each member (address, ids, name, driver), whether the group can be passed through (every non-bridge member on vfio-pci or on no driver, or all of them claimed by one VM) and which configured VM claims each device.',
    ],
    options: ['groups', 'root', 'config', 'json'],
    examples: ['qemu-hook devices', 'qemu-hook devices --groups'],
    needsRoot: false,
  },
  {
    name: 'simulate',
    usage: '--simulate VM prepare|release [--root DIR] [--config FILE] [--json]',
    summary: 'the plan the hook would carry out when VM starts (prepare) or stops (release); changes nothing',
    details: [
      "Lists the VM's own scripts (qemu.d/VM/prepare/begin/*, qemu.d/VM/release/end/*) where the hook would run them, around the built-in steps.",
      'Exit 0 when the hook would let the event pass, 1 when it would refuse, 2 on a usage or config error (a VM that is not in the config, too).',
    ],
    options: ['simulate', 'root', 'config', 'json'],
    examples: [
      'qemu-hook --simulate win11 prepare',
      'qemu-hook --simulate win11 prepare --root fixtures/hosts/workstation',
    ],
    needsRoot: false,
  },
  {
    name: 'check',
    usage: 'check [--config FILE] [--root DIR|FILE] [--fleet DIR] [--json]',
    summary: 'validate the config and show what a start of each configured VM would do',
    details: [
      'Exit 2 on config problems (each with its path and fix), 1 when a configured start would be refused.',
      'With --fleet DIR: one config against every snapshot in DIR (qemu-hook snapshot on each host), a table of host and VM: ok, or refused and why.',
    ],
    options: ['root', 'config', 'json', 'fleet'],
    examples: [
      'qemu-hook check',
      'qemu-hook check --config ./config.yaml',
      'qemu-hook check --fleet ./snapshots --config ./config.yaml',
    ],
    needsRoot: false,
  },
  {
    name: 'status',
    usage: 'status [--vm NAME]... [--root DIR] [--json]',
    summary:
      'devices held according to the state file: by which VM, original and current driver, stale records',
    details: [],
    options: ['vm', 'root', 'config', 'json'],
    examples: ['qemu-hook status', 'qemu-hook status --vm win11 --json'],
    needsRoot: false,
  },
  {
    name: 'recover',
    usage: 'recover [--vm NAME]... [--dry-run] [--root DIR] [--json]',
    summary:
      'give back every device recorded for a VM that is not running (after a crash or a failed release)',
    details: ['The devices of a running VM stay with it. --dry-run shows what would be given back.'],
    options: ['vm', 'dry-run', 'root', 'config', 'json'],
    examples: ['sudo qemu-hook recover --vm win11', 'qemu-hook recover --dry-run'],
    needsRoot: true,
  },
  {
    name: 'apply',
    usage: 'apply [--vm NAME]... [--dry-run [--json]] [--yes] [--config FILE] [--root DIR]',
    summary: "rewrite each VM's <hostdev> entries to match the hardware (shows a diff, asks)",
    details: [
      'Asks "Apply to VM? [y/N]" at a terminal (end of input is no); without a terminal it needs --yes. Never redefines a running VM. --dry-run exits 1 when something would change; --json goes with --dry-run only.',
    ],
    options: ['vm', 'dry-run', 'yes', 'root', 'config', 'json'],
    examples: ['sudo qemu-hook apply --vm win11', 'qemu-hook apply --dry-run --json'],
    needsRoot: true,
  },
  {
    name: 'log',
    usage: 'log [--vm NAME]... [--follow] [--json] [--root DIR]',
    summary: "the hook's log for a person: time, level, VM, event, message, one line per event",
    details: [
      'Reads the log file the config names (default /var/log/libvirt/qemu-hook.log). --json prints the matching events as JSON lines instead; --follow keeps printing new ones, also across a log rotation.',
    ],
    options: ['vm', 'follow', 'root', 'config', 'json'],
    examples: ['qemu-hook log --vm win11', 'qemu-hook log --follow'],
    needsRoot: false,
  },
  {
    name: 'snapshot',
    usage: 'snapshot [--output FILE] [--redact] [--root DIR|FILE] [--config FILE]',
    summary: 'capture what qemu-hook reads of this host into one .tar.gz, for a bug report or a fleet check',
    details: [
      'The sysfs and /proc entries the program reads (PCI, USB, IOMMU, the single-GPU hand-over), the config, the domain definitions, the state file and the pci.ids lines in use, and what the hand-over asks systemd and logind (the display manager and the units it would stop, the sessions). Replay it anywhere with --root FILE.tar.gz: devices, check and --simulate read it; the hook, recover and apply refuse it.',
    ],
    options: ['output', 'redact', 'root', 'config'],
    examples: ['qemu-hook snapshot --redact', 'qemu-hook devices --root qemu-hook-myhost-2026-12-02.tar.gz'],
    needsRoot: false,
  },
  {
    name: 'help',
    usage: 'help [COMMAND]',
    summary: "a command's usage, options and an example (the same as qemu-hook COMMAND --help)",
    details: [],
    options: [],
    examples: ['qemu-hook help apply'],
    needsRoot: false,
  },
  {
    name: 'completion',
    usage: 'completion bash|zsh',
    summary: 'print the shell completion script (install.sh installs both)',
    details: [],
    options: [],
    examples: ['qemu-hook completion bash > /etc/bash_completion.d/qemu-hook'],
    needsRoot: false,
  },
  {
    name: 'man',
    usage: 'man',
    summary: 'print the manual page (roff; install.sh installs it as qemu-hook(8))',
    details: [],
    options: [],
    examples: ['qemu-hook man | man -l -'],
    needsRoot: false,
  },
];

export function optionSpec(name: OptionName): OptionSpec {
  return OPTIONS.find((o) => o.name === name)!;
}

export function commandSpec(name: CommandName): CommandSpec {
  return COMMANDS.find((c) => c.name === name)!;
}
