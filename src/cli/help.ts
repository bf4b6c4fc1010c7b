import {
  COMMANDS,
  COMMON_OPTIONS,
  type CommandName,
  type CommandSpec,
  commandSpec,
  type OPTIONS,
  optionSpec,
} from './spec.js';

/** `qemu-hook --help`: every command with its one-line summary. */
export function overview(): string {
  const rows = COMMANDS.map((c) => [
    c.name === 'simulate' ? '--simulate VM prepare|release' : c.name,
    c.summary,
  ]);
  const width = Math.max(...rows.map((r) => r[0]!.length));
  return [
    'usage: qemu-hook <command> [options]',
    '',
    'commands:',
    ...rows.map(([name, summary]) => `  ${name!.padEnd(width)}  ${summary}`),
    '',
    `common options: ${COMMON_OPTIONS.map(optionLabel).join(', ')}, --version`,
    'qemu-hook <command> --help (or qemu-hook help <command>): its options and an example.',
    'qemu-hook hook <domain> <op> <subop> <extra> is what /etc/libvirt/hooks/qemu runs.',
  ].join('\n');
}

/** `qemu-hook <command> --help`: its usage, what it does, its options and examples. */
export function commandHelp(name: CommandName): string {
  const c = commandSpec(name);
  const options = optionRows(c);
  const width = Math.max(...options.map((r) => r[0].length));
  return [
    `usage: qemu-hook ${c.usage}`,
    '',
    `${capital(c.summary)}.${c.needsRoot ? ' Needs root (except --dry-run).' : ''}`,
    ...c.details.flatMap((d) => ['', d]),
    '',
    'options:',
    ...options.map(([label, help]) => `  ${label.padEnd(width)}  ${help}`),
    '',
    c.examples.length > 1 ? 'examples:' : 'example:',
    ...c.examples.map((e) => `  ${e}`),
  ].join('\n');
}

/** The options of a command as [label, help], its own first, then the common ones. */
export function optionRows(c: CommandSpec): [string, string][] {
  return [...new Set([...c.options, ...COMMON_OPTIONS])].map((n) => [optionLabel(n), optionSpec(n).help]);
}

export function optionLabel(name: (typeof OPTIONS)[number]['name']): string {
  const o = optionSpec(name);
  const long = `--${o.name}${o.value ? ` ${o.value}` : ''}`;
  return o.short ? `-${o.short}, ${long}` : long;
}

function capital(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
