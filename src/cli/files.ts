import { INSTALLED_README } from '../model/paths.js';

/** The files a user of qemu-hook meets, for the man page. */
export function overviewFiles(): [string, string][] {
  return [
    ['/etc/qemu-hook/config.yaml', 'the config: which VMs get which devices (reference in the README)'],
    ['/etc/libvirt/hooks/qemu', 'the hook libvirt runs (installed by install.sh)'],
    ['/etc/libvirt/hooks/qemu.d/VM/OP/SUBOP/', "the VM's own scripts, run by the hook"],
    ['/var/lib/qemu-hook/state.json', 'the devices held: by which VM, from which original driver'],
    ['/var/log/libvirt/qemu-hook.log', "the hook's log (JSON lines; qemu-hook log shows it)"],
    ['/var/log/libvirt/qemu-hook-scripts.log', 'what the per-VM scripts printed'],
    [INSTALLED_README, 'the README, with the config reference'],
  ];
}
