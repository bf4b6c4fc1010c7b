import type { HostSupport } from '../model/device.js';

// What the host cannot do, in the words `devices`, `check` and a refused start use.

/** Why no PCI device can be passed through on this host, with the fix; null when the IOMMU is active. */
export function iommuProblem(support: HostSupport | undefined): string | null {
  if (!support || support.iommu) return null;
  const cmdline = support.cmdline ?? '';
  const verify =
    'verify after a reboot: `ls /sys/kernel/iommu_groups` lists groups (and `dmesg | grep -i -e DMAR -e AMD-Vi` shows the IOMMU)';
  const firmware =
    support.cpuVendor === 'amd'
      ? 'AMD-Vi / IOMMU (often "SVM" and "IOMMU") in the firmware setup'
      : support.cpuVendor === 'intel'
        ? 'VT-d in the firmware setup'
        : 'the IOMMU (Intel VT-d or AMD-Vi) in the firmware setup';
  const param =
    support.cpuVendor === 'amd'
      ? 'amd_iommu=on iommu=pt'
      : support.cpuVendor === 'intel'
        ? 'intel_iommu=on iommu=pt'
        : 'intel_iommu=on iommu=pt (Intel) or amd_iommu=on iommu=pt (AMD)';
  const asked = /\b(intel_iommu|amd_iommu)=on\b/.test(cmdline);
  const fix = asked
    ? `the kernel command line already asks for it (${cmdline.match(/\b(intel_iommu|amd_iommu)=on\b/)![0]}), so enable ${firmware}`
    : `add ${param} to the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub, or grub2-mkconfig -o /boot/grub2/grub.cfg) and enable ${firmware}, then reboot`;
  return `this host has no active IOMMU (/sys/kernel/iommu_groups is empty), so no PCI device can be passed through: ${fix}; ${verify}`;
}

/** Where device names come from when they are missing; null when pci.ids was found. */
export function pciIdsProblem(support: HostSupport | undefined): string | null {
  if (!support || support.pciIds !== null) return null;
  return `no pci.ids on this host (looked for ${support.pciIdsSearched.join(', ')}): device names are shown as ids only and name: criteria cannot match; install pciutils (Debian/Ubuntu, Arch) or hwdata (Fedora/RHEL) to get it`;
}
