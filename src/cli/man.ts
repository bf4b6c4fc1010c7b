import { overviewFiles } from './files.js';
import { optionRows } from './help.js';
import { COMMANDS, COMMON_OPTIONS, optionSpec } from './spec.js';

/** qemu-hook(8) in roff (man macros), made from the same tables as --help. */
export function manPage(version: string): string {
  const out: string[] = [
    `.TH QEMU-HOOK 8 "" "qemu-hook ${roff(version)}" "System Administration"`,
    '.SH NAME',
    "qemu\\-hook \\- device passthrough for libvirt VMs, as libvirt's qemu hook",
    '.SH SYNOPSIS',
  ];
  for (const c of COMMANDS) out.push('.B qemu\\-hook', roff(c.usage), '.br');
  out.push(
    '.SH DESCRIPTION',
    roff(
      "qemu-hook is libvirt's /etc/libvirt/hooks/qemu. For the VMs named in its config it finds the host devices they get (by ids, class, name, address, with fallbacks), refuses a start whose definition points at a device that moved, records each device's original driver, detaches it to vfio-pci before the VM starts and puts it back on that driver after the VM stops. It runs the per-VM scripts in qemu.d/VM/OP/SUBOP/.",
    ),
    '.SH COMMANDS',
  );
  for (const c of COMMANDS) {
    out.push('.TP', `.B qemu\\-hook ${roff(c.usage)}`, roff(`${c.summary}.`));
    for (const d of c.details) out.push('.IP', roff(d));
    if (c.needsRoot) out.push('.IP', 'Needs root (except with \\-\\-dry\\-run).');
    const own = optionRows(c).filter(([label]) => !COMMON_OPTIONS.some((n) => label.endsWith(`--${n}`)));
    if (own.length > 0) {
      out.push('.RS');
      for (const [label, help] of own) out.push('.TP', `.B ${roff(label)}`, roff(help));
      out.push('.RE');
    }
  }
  out.push('.SH COMMON OPTIONS');
  for (const n of [...COMMON_OPTIONS, 'version' as const]) {
    const o = optionSpec(n);
    out.push('.TP', `.B ${roff(`${o.short ? `-${o.short}, ` : ''}--${o.name}`)}`, roff(o.help));
  }
  out.push(
    '.SH EXIT STATUS',
    '.TP',
    '.B 0',
    'ok.',
    '.TP',
    '.B 1',
    roff(
      'refused: the hook would refuse (or did), a device could not be given back, apply --dry-run would change something.',
    ),
    '.TP',
    '.B 2',
    'a usage or config error.',
    '.SH FILES',
  );
  for (const [path, what] of overviewFiles()) out.push('.TP', `.I ${roff(path)}`, roff(what));
  out.push('.SH EXAMPLES', '.nf');
  for (const c of COMMANDS) for (const e of c.examples) out.push(roff(e));
  out.push('.fi', '.SH SEE ALSO', '.BR virsh (1),', '.BR libvirtd (8)');
  return `${out.join('\n')}\n`;
}

/** Text for a roff line: backslashes and dashes escaped, no line starting as a request. */
function roff(s: string): string {
  const t = s.replace(/\\/g, '\\e').replace(/-/g, '\\-');
  return /^[.']/.test(t) ? `\\&${t}` : t;
}
