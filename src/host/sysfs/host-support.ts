import { join } from 'node:path';
import type { HostSupport } from '../../model/device.js';
import { listDir, readSmall } from './sysfs-files.js';

/**
 * Whether the kernel runs with an active IOMMU (it lists its groups in /sys/kernel/iommu_groups),
 * and, only when it does not, what the message needs: the CPU vendor and the command line.
 * /proc/cpuinfo is read only then: on a healthy host the hook pays one readdir.
 */
export function readHostSupport(
  sys: string,
  proc: string,
  pciIds: string | null,
  searched: readonly string[],
) {
  const iommu = (listDir(join(sys, 'kernel/iommu_groups'))?.length ?? 0) > 0;
  const support: HostSupport = {
    iommu,
    cpuVendor: iommu ? null : cpuVendor(proc),
    cmdline: iommu ? null : (readOrNull(join(proc, 'cmdline'))?.trim() ?? null),
    pciIds,
    pciIdsSearched: searched,
  };
  return support;
}

function cpuVendor(proc: string): HostSupport['cpuVendor'] {
  const text = readOrNull(join(proc, 'cpuinfo')) ?? '';
  const m = /^vendor_id\s*:\s*(\S+)/m.exec(text);
  if (m?.[1] === 'GenuineIntel') return 'intel';
  if (m?.[1] === 'AuthenticAMD' || m?.[1] === 'HygonGenuine') return 'amd';
  return null;
}

function readOrNull(path: string): string | null {
  try {
    return readSmall(path);
  } catch {
    return null;
  }
}
