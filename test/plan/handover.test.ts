import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configProblems, parseConfig } from '../../src/config/parse.js';
import { FixtureHandoverProbe, FixtureServiceManager } from '../../src/host/handover/fixture-services.js';
import type { HandoverSnapshot } from '../../src/model/handover.js';
import { hostPaths } from '../../src/model/paths.js';
import { planHandover, sessionHoldersError } from '../../src/plan/handover.js';
import { REPO } from '../fixtures/fixture-hosts.js';

const snapshotOf = async (
  name: string,
  functions: string[],
  units: readonly string[] = [],
  modules: readonly string[] = [],
) => {
  const paths = hostPaths(join(REPO, 'fixtures/hosts', name));
  const services = new FixtureServiceManager(paths.root);
  return new FixtureHandoverProbe(paths, services, true).snapshot(functions, { units, modules });
};

const handoverOf = (yaml: string) => {
  const r = parseConfig(`domains:\n  vm:\n    handover: ${yaml}\n`);
  expect(r.errors).toEqual([]);
  return r.config!.domains.get('vm')!.handover!;
};

describe('detection on fixture hosts', () => {
  it('NVIDIA, efifb without a PCI parent: found on the GPU through /proc/iomem; holders with their units', async () => {
    const s = await snapshotOf('single-nvidia', ['0000:01:00.0', '0000:01:00.1'], [], ['nvidia']);
    expect(s.bootVga).toBe(true);
    expect(s.firmwareFramebuffers).toEqual([
      { device: 'efi-framebuffer.0', driver: 'efi-framebuffer', onGpuBy: 'iomem' },
    ]);
    expect(s.displayManager).toBe('sddm.service');
    expect(s.holders.map((h) => [h.pid, h.command, h.unit, h.userManager, h.session, h.nodes])).toEqual([
      [912, 'nvidia-persiste', 'nvidia-persistenced.service', null, null, ['/dev/nvidia0', '/dev/nvidiactl']],
      [
        2210,
        'kwin_wayland',
        'plasma-kwin_wayland.service',
        'user@1001.service',
        null,
        ['/dev/dri/card0', '/dev/nvidia-modeset', '/dev/nvidia0'],
      ],
    ]);
    expect(s.vtcons).toEqual([
      { vtcon: 'vtcon0', name: '(S) dummy device', bound: true },
      { vtcon: 'vtcon1', name: '(M) frame buffer device', bound: true },
    ]);
    expect(s.modules[0]).toMatchObject({
      name: 'nvidia',
      loaded: true,
      builtin: false,
      holders: ['nvidia_modeset', 'nvidia_uvm'],
    });
  });

  it('AMD: the fb is the GPU own (amdgpudrmfb) and there is no firmware fb left', async () => {
    const s = await snapshotOf('single-amd', ['0000:01:00.0', '0000:01:00.1']);
    expect(s.framebuffers).toEqual([{ name: 'fb0', id: 'amdgpudrmfb', device: '0000:01:00.0' }]);
    expect(s.firmwareFramebuffers).toEqual([]);
    // The HDMI audio function's nodes count: wireplumber holds its control node.
    expect(s.holders.find((h) => h.command === 'wireplumber')?.nodes).toEqual(['/dev/snd/controlC1']);
  });
});

describe('planHandover', () => {
  it('orders services, sessions, the display manager, holders, fbcon, firmware fb, modules', async () => {
    const config = handoverOf(
      '{ services: [nvidia-persistenced], modules: [nvidia_drm, nvidia], timeout: 3 }',
    );
    const s = await snapshotOf(
      'single-nvidia',
      ['0000:01:00.0', '0000:01:00.1'],
      config.services,
      config.modules,
    );
    const plan = planHandover(s, config);
    expect(plan.errors).toEqual([]);
    expect(plan.steps.map((x) => `${x.step} ${x.kind} ${x.target}`)).toEqual([
      '1 stop-service nvidia-persistenced.service',
      '2 end-session session 3 (bob, wayland on seat0)',
      '3 stop-service sddm.service',
      '4 wait-holders /dev/dri/card0, /dev/dri/renderD128, /dev/nvidia-modeset, /dev/nvidia-uvm, /dev/nvidia0, /dev/nvidiactl, /dev/snd/controlC1, /dev/fb0',
      '5 unbind-vtcon vtcon1 "(M) frame buffer device"',
      '6 release-firmware-fb efi-framebuffer.0',
      '7 unload-module nvidia_drm',
      '8 unload-module nvidia',
    ]);
    expect(plan.steps.every((x) => x.timeoutMs === 3000)).toBe(true);
  });

  it('stops a known GPU daemon unlisted, but no other unit holding the GPU: that one is named with the fix', async () => {
    const config = handoverOf('{}');
    const s = await snapshotOf('single-nvidia', ['0000:01:00.0', '0000:01:00.1'], ['ollama.service']);
    const withJob: HandoverSnapshot = {
      ...s,
      services: [...s.services, { unit: 'ollama.service', active: true }],
      holders: [
        ...s.holders,
        {
          pid: 4242,
          command: 'ollama',
          unit: 'ollama.service',
          userManager: null,
          session: null,
          nodes: ['/dev/nvidia0'],
        },
      ],
    };
    const plan = planHandover(withJob, config);
    const stopped = plan.steps.filter((x) => x.kind === 'stop-service').map((x) => x.target);
    expect(stopped).toEqual(['nvidia-persistenced.service', 'sddm.service']);
    expect(plan.warnings).toContain(
      'ollama.service holds the GPU and is not stopped by the hand-over: list it in handover.services to stop it for the VM and start it again after',
    );
    expect(plan.steps.find((x) => x.kind === 'wait-holders')?.why).toContain(
      'pid 4242 ollama (ollama.service)',
    );
    // Listed, it is stopped like the daemon.
    const listed = planHandover(withJob, handoverOf('{ services: [ollama] }'));
    expect(listed.steps.filter((x) => x.kind === 'stop-service').map((x) => x.target)).toContain(
      'ollama.service',
    );
    expect(listed.warnings.join('\n')).not.toMatch(/ollama/);
  });

  it('services that are not active, and modules not loaded, are left out', async () => {
    const config = handoverOf('{ services: [lactd], modules: [amdgpu_not_here] }');
    const s = await snapshotOf(
      'single-amd',
      ['0000:01:00.0', '0000:01:00.1'],
      config.services,
      config.modules,
    );
    expect(planHandover(s, config).steps.map((x) => x.kind)).toEqual([
      'end-session',
      'stop-service',
      'wait-holders',
      'unbind-vtcon',
    ]);
  });

  it('a built-in module is refused with the fix', async () => {
    const config = handoverOf('{ modules: [i915] }');
    const s = await snapshotOf('intel-laptop', ['0000:00:02.0'], [], ['i915']);
    const builtin: HandoverSnapshot = {
      ...s,
      modules: s.modules.map((m) => ({ ...m, builtin: true, refcnt: null })),
    };
    expect(planHandover(builtin, config).errors).toEqual([
      'handover.modules: i915 is built into the kernel and cannot be unloaded: remove it from handover.modules',
    ]);
  });

  it('the guard without handover names graphical holders only', async () => {
    const s = await snapshotOf('single-nvidia', ['0000:01:00.0']);
    expect(sessionHoldersError(s.holders.filter((h) => h.pid === 912))).toBeNull();
    expect(sessionHoldersError(s.holders)).toMatch(
      /pid 2210 kwin_wayland \(plasma-kwin_wayland\.service\).*handover: \{\}/,
    );
  });
});

describe('handover config', () => {
  it('{} turns it on with defaults; bare names get .service', () => {
    expect(handoverOf('{}')).toEqual({ services: [], modules: [], timeoutMs: 15_000, holders: 'refuse' });
    expect(handoverOf('{ services: [nvidia-persistenced, lactd.service] }').services).toEqual([
      'nvidia-persistenced.service',
      'lactd.service',
    ]);
  });

  it('refuses the DRM core, snd_hda_intel and libvirt daemons, each with its path', () => {
    const r = parseConfig(
      'domains:\n  vm:\n    handover: { modules: [nvidia, drm_kms_helper], services: [virtqemud] }\n',
    );
    expect(configProblems(r)).toEqual([
      'domains.vm.handover.services[0]: virtqemud.service runs libvirt itself and is never stopped: remove it',
      'domains.vm.handover.modules[1]: drm_kms_helper is shared by every GPU (or built in) and is never unloaded: remove it',
    ]);
    expect(configProblems(parseConfig('domains:\n  vm:\n    handover: { holders: shoot }\n'))[0]).toMatch(
      /^domains\.vm\.handover\.holders/,
    );
  });
});
