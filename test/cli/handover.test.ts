import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, HOSTS, MAIN } from '../support/cli.js';
import { differencesFromStart, domainXml, handoverHosts, stateOf } from '../support/handover-host.js';

const host = handoverHosts();

describe('qemu-hook and the single-GPU hand-over (built program, fixture hosts)', () => {
  it('--simulate --json lists the hand-over steps in order with what each would do', () => {
    const r = cli(['--simulate', 'gpu-vm', 'prepare', '--root', join(HOSTS, 'single-amd'), '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as {
      ok: boolean;
      handover: { step: number; kind: string; target: string; action: string }[];
    };
    expect(out.ok).toBe(true);
    expect(out.handover.map((s) => [s.step, s.kind])).toEqual([
      [1, 'end-session'],
      [2, 'stop-service'],
      [3, 'wait-holders'],
      [4, 'unbind-vtcon'],
    ]);
    expect(out.handover[0]!.action).toBe(
      "stop alice's org.gnome.Shell@wayland.service, wireplumber.service, then terminate session 2",
    );
    expect(out.handover[1]!.target).toBe('gdm.service');
    expect(out.handover[2]!.target).toBe(
      '/dev/dri/card0, /dev/dri/renderD128, /dev/fb0, /dev/snd/controlC1, /dev/snd/pcmC1D3p',
    );
  });

  it('a domain without handover is refused the console GPU, naming the key', () => {
    const r = cli(['--simulate', 'gpu-vm-plain', 'prepare', '--root', join(HOSTS, 'intel-laptop'), '--json']);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as { errors: string[]; handover: unknown[] };
    expect(out.handover).toEqual([]);
    expect(out.errors).toEqual([
      expect.stringMatching(/boot VGA device driving the console .*add handover: \{\} to the domain/),
      expect.stringMatching(
        /held by a graphical session \(pid 1432 gnome-shell \(org\.gnome\.Shell@wayland\.service\)\): add handover: \{\} to the domain/,
      ),
    ]);
  });

  it('SIGKILL in the middle of a hand-over: status shows what is still taken, recover gives it back', () => {
    const root = host('single-nvidia');
    writeFileSync(join(root, 'etc/qemu-hook/fault-injection'), 'handover-release-firmware-fb\n');
    const hook = spawnSync(process.execPath, [MAIN, 'hook', 'gpu-vm', 'prepare', 'begin', '-'], {
      input: domainXml(root),
      env: { ...process.env, QEMU_HOOK_ROOT: root },
      encoding: 'utf8',
    });
    expect(hook.signal).toBe('SIGKILL');
    rmSync(join(root, 'etc/qemu-hook/fault-injection'));

    const status = cli(['status', '--root', root]);
    expect(status.stdout).toMatch(/hand-over in progress or not given back/);
    expect(status.stdout).toMatch(/gpu-vm\s+6\s+efi-framebuffer\.0\s+acting \(crash\?\)/);
    expect(status.stdout).toMatch(/gpu-vm\s+3\s+sddm\.service\s+done\s+start sddm\.service/);

    const dry = cli(['recover', '--dry-run', '--root', root]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/would give back: sddm\.service/);

    const r = cli(['recover', '--root', root]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/given back: nvidia-persistenced\.service/);
    return differencesFromStart(root, 'single-nvidia').then((d) => {
      expect(d).toEqual([]);
      expect(stateOf(root).handovers).toBeUndefined();
    });
  });

  it('--simulate release shows the give-back in order', () => {
    const root = host('single-nvidia');
    const hook = spawnSync(process.execPath, [MAIN, 'hook', 'gpu-vm', 'prepare', 'begin', '-'], {
      input: domainXml(root),
      env: { ...process.env, QEMU_HOOK_ROOT: root },
      encoding: 'utf8',
    });
    expect(hook.status).toBe(0);
    const r = cli(['--simulate', 'gpu-vm', 'release', '--root', root, '--json']);
    const out = JSON.parse(r.stdout) as { handover: { kind: string; action: string }[] };
    expect(out.handover.map((s) => s.action)).toEqual([
      'modprobe nvidia NVreg_PreserveVideoMemoryAllocations=1',
      'modprobe nvidia_uvm',
      'modprobe nvidia_modeset hdmi_deepcolor=Y',
      'modprobe nvidia_drm fbdev=N modeset=Y',
      'bind efi-framebuffer.0 to efi-framebuffer (ENODEV: the native driver has it)',
      'bind the vtcon named "(M) frame buffer device"',
      'start sddm.service',
      'start nvidia-persistenced.service',
    ]);
  });
});
