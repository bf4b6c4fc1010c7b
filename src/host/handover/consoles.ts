import { readFileSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { FirmwareFramebuffer, Framebuffer, VirtualConsole } from '../../model/handover.js';
import { linkName, listDir, readSmall } from '../sysfs/sysfs-files.js';

// What draws the console: framebuffers (/sys/class/graphics, /proc/fb), firmware framebuffer
// platform devices and the virtual-console drivers (/sys/class/vtconsole).

const FIRMWARE_FB = /^(efi|simple|vesa)-framebuffer\.\d+$/;
/** /proc/iomem names of the memory a firmware framebuffer claims. */
const FIRMWARE_FB_MEMORY = /^(efifb|BOOTFB|simpledrm|simplefb|vesafb)$/;

export function framebuffers(sys: string, proc: string): Framebuffer[] {
  const ids = new Map<string, string>();
  try {
    for (const line of readFileSync(join(proc, 'fb'), 'utf8').split('\n')) {
      const m = /^(\d+)\s+(.*)$/.exec(line.trim());
      if (m) ids.set(`fb${m[1]}`, m[2]!);
    }
  } catch {
    // no /proc/fb: no fbdev at all
  }
  const out: Framebuffer[] = [];
  for (const name of (listDir(join(sys, 'class/graphics')) ?? []).filter((n) => /^fb\d+$/.test(n)).sort()) {
    let device: string | null = null;
    try {
      device = basename(realpathSync(join(sys, 'class/graphics', name, 'device')));
    } catch {
      device = null;
    }
    out.push({ name, id: ids.get(name) ?? '?', device });
  }
  return out;
}

/**
 * Firmware framebuffer platform devices, each with how we know it is on this GPU: its sysfs parent
 * is a GPU function (kernels with the sysfb parent patch), else its memory lies inside one of the
 * GPU's BARs (/proc/iomem), else — when iomem cannot tell (unreadable, or zeroed for non-root) —
 * the GPU being the boot VGA device.
 */
export function firmwareFramebuffers(
  sys: string,
  proc: string,
  functions: readonly string[],
  bootVga: boolean,
): FirmwareFramebuffer[] {
  const platform = join(sys, 'bus/platform/devices');
  const names = (listDir(platform) ?? []).filter((n) => FIRMWARE_FB.test(n)).sort();
  if (names.length === 0) return [];
  const iomem = firmwareFbInBars(proc, functions);
  return names.map((device) => {
    let real = '';
    try {
      real = realpathSync(join(platform, device));
    } catch {
      real = '';
    }
    const parts = real.split('/');
    const onGpuBy: FirmwareFramebuffer['onGpuBy'] = functions.some((f) => parts.includes(f))
      ? 'parent'
      : iomem === true
        ? 'iomem'
        : iomem === null && bootVga
          ? 'boot-vga'
          : null;
    return { device, driver: linkName(join(platform, device, 'driver')), onGpuBy };
  });
}

/** true/false: a firmware framebuffer's memory is/is not inside a BAR of the GPU; null: cannot tell. */
function firmwareFbInBars(proc: string, functions: readonly string[]): boolean | null {
  let text: string;
  try {
    text = readFileSync(join(proc, 'iomem'), 'utf8');
  } catch {
    return null;
  }
  const bars: [bigint, bigint][] = [];
  const fbs: [bigint, bigint][] = [];
  let anyAddress = false;
  for (const line of text.split('\n')) {
    const m = /^\s*([0-9a-f]+)-([0-9a-f]+) : (.+)$/i.exec(line);
    if (!m) continue;
    const start = BigInt(`0x${m[1]}`);
    const end = BigInt(`0x${m[2]}`);
    if (end > 0n) anyAddress = true;
    const name = m[3]!.trim();
    if (functions.includes(name)) bars.push([start, end]);
    else if (FIRMWARE_FB_MEMORY.test(name)) fbs.push([start, end]);
  }
  // Without root the kernel shows every range as 00000000-00000000.
  if (!anyAddress) return null;
  if (fbs.length === 0) return false;
  return fbs.some(([s, e]) => bars.some(([bs, be]) => s >= bs && e <= be));
}

export function vtcons(sys: string): VirtualConsole[] {
  const dir = join(sys, 'class/vtconsole');
  const out: VirtualConsole[] = [];
  for (const vtcon of (listDir(dir) ?? []).filter((n) => /^vtcon\d+$/.test(n)).sort()) {
    try {
      out.push({
        vtcon,
        name: readSmall(join(dir, vtcon, 'name')).trim(),
        bound: readSmall(join(dir, vtcon, 'bind')).trim() === '1',
      });
    } catch {
      // vanished while being read (fbcon unregistering): not there
    }
  }
  return out;
}
