import { existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HANDOVER_FAULT_POINTS } from '../../src/model/faults.js';
import {
  crashAt,
  differencesFromStart,
  handoverHosts,
  prepare,
  release,
  services,
  stateOf,
  tweak,
} from '../support/handover-host.js';

const host = handoverHosts();

const driverOf = (root: string, address: string) => {
  try {
    return readlinkSync(join(root, 'sys/bus/pci/devices', address, 'driver'))
      .split('/')
      .pop();
  } catch {
    return null;
  }
};

describe('single-GPU hand-over on fixture hosts', () => {
  for (const name of ['single-amd', 'single-nvidia', 'intel-laptop'] as const) {
    it(`${name}: start hands the GPU over, release gives everything back as it was`, async () => {
      const root = host(name);
      const started = await prepare(root);
      expect(started.stderr).toEqual([]);
      expect(started.exitCode).toBe(0);
      const gpu = name === 'intel-laptop' ? '0000:00:02.0' : '0000:01:00.0';
      expect(driverOf(root, gpu)).toBe('vfio-pci');
      // The desktop is down while the VM has the GPU.
      expect(Object.values(services(root)).every((s) => s === 'inactive')).toBe(true);
      expect(existsSync(join(root, 'sys/class/drm/card0'))).toBe(false);
      expect(stateOf(root).handovers?.length).toBeGreaterThan(0);

      const stopped = await release(root);
      expect(stopped.exitCode).toBe(0);
      expect(await differencesFromStart(root, name)).toEqual([]);
      expect(stateOf(root).records).toEqual([]);
      expect(stateOf(root).handovers).toBeUndefined();
    });
  }

  it('single-nvidia: modules are unloaded in the configured order and loaded back in reverse with their parameters', async () => {
    const root = host('single-nvidia');
    expect((await prepare(root)).exitCode).toBe(0);
    await release(root);
    const calls = readFileSync(join(root, 'var/lib/qemu-hook-fixture/handover-calls.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { op: string; name?: string; parameters?: Record<string, string> })
      .filter((c) => c.op === 'unloadModule' || c.op === 'loadModule');
    expect(calls.map((c) => `${c.op} ${c.name}`)).toEqual([
      'unloadModule nvidia_drm',
      'unloadModule nvidia_modeset',
      'unloadModule nvidia_uvm',
      'unloadModule nvidia',
      'loadModule nvidia',
      'loadModule nvidia_uvm',
      'loadModule nvidia_modeset',
      'loadModule nvidia_drm',
    ]);
    // "(null)" is not passed back to modprobe; the rest is.
    expect(calls.find((c) => c.op === 'loadModule' && c.name === 'nvidia')?.parameters).toEqual({
      NVreg_PreserveVideoMemoryAllocations: '1',
    });
    expect(calls.find((c) => c.op === 'loadModule' && c.name === 'nvidia_drm')?.parameters).toEqual({
      fbdev: 'N',
      modeset: 'Y',
    });
  });

  it('a firmware framebuffer the native driver already unregistered (ENODEV) counts as released', async () => {
    const root = host('single-nvidia');
    tweak(root, 'kernel', (k) => {
      k['gone'] = ['efi-framebuffer.0'];
    });
    const r = await prepare(root);
    expect(r.stderr).toEqual([]);
    expect(r.exitCode).toBe(0);
  });

  it('a holder that never leaves: the start is refused naming it, and nothing is left half-done', async () => {
    const root = host('single-amd');
    tweak(root, 'services', (s) => {
      s['linger'] = { '1432': -1 };
    });
    tweak(root, 'kernel', () => {});
    // Short timeout: the config of the fixture says {} (15 s); 1 s here.
    const cfg = join(root, 'etc/qemu-hook/config.yaml');
    writeFileSync(cfg, readFileSync(cfg, 'utf8').replace('handover: {}', 'handover: { timeout: 1 }'));
    const r = await prepare(root);
    expect(r.exitCode).toBe(1);
    expect(r.stderr[0]).toMatch(
      /still held after 1 s by pid 1432 gnome-shell \(org\.gnome\.Shell@wayland\.service\)/,
    );
    expect(driverOf(root, '0000:01:00.0')).toBe('amdgpu');
    expect(services(root)['gdm.service']).toBe('active');
    expect(stateOf(root).handovers).toBeUndefined();
    expect(
      (await differencesFromStart(root, 'single-amd')).filter((d) => !d.startsWith('proc/1432')),
    ).toEqual([]);
  });

  it('holders that leave after a few polls: the hand-over waits for them (no fixed sleep) and goes on', async () => {
    const root = host('single-nvidia');
    tweak(root, 'services', (s) => {
      s['linger'] = { '912': 3 };
    });
    const r = await prepare(root);
    expect(r.stderr).toEqual([]);
    expect(driverOf(root, '0000:01:00.0')).toBe('vfio-pci');
  });

  it('holders: term sends SIGTERM to those left at half the timeout, never to PID 1', async () => {
    const root = host('single-amd');
    tweak(root, 'services', (s) => {
      s['linger'] = { '1432': 1000 };
    });
    const cfg = join(root, 'etc/qemu-hook/config.yaml');
    writeFileSync(
      cfg,
      readFileSync(cfg, 'utf8').replace('handover: {}', 'handover: { timeout: 1, holders: term }'),
    );
    const r = await prepare(root);
    expect(r.stderr).toEqual([]);
    const signals = readFileSync(join(root, 'var/lib/qemu-hook-fixture/handover-calls.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('"signal"'));
    expect(signals).toEqual(['{"op":"signal","pid":1432,"signal":"SIGTERM"}']);
  });

  it('a kernel write that never returns fails its step at the deadline and the host is rolled back', async () => {
    const root = host('single-nvidia');
    tweak(root, 'kernel', (k) => {
      k['hang'] = ['unloadModule:nvidia'];
    });
    const cfg = join(root, 'etc/qemu-hook/config.yaml');
    writeFileSync(cfg, readFileSync(cfg, 'utf8').replace('timeout: 5', 'timeout: 1'));
    const r = await prepare(root);
    expect(r.exitCode).toBe(1);
    expect(r.stderr[0]).toMatch(
      /hand-over step 10 \(unload nvidia .*\) failed: unloading nvidia did not finish within 1 s/,
    );
    expect(await differencesFromStart(root, 'single-nvidia')).toEqual([]);
    expect(stateOf(root).handovers).toBeUndefined();
  });
});

describe('every hand-over step failing in turn leaves the host as it started', () => {
  // single-nvidia has every kind of step: services, a session, the display manager, holders,
  // fbcon, the firmware framebuffer and four modules.
  const failures: [string, 'kernel' | 'services', string, object][] = [
    ['stop nvidia-persistenced', 'services', 'fail', { 'stop:nvidia-persistenced.service': 'fail' }],
    ['terminate the session', 'services', 'fail', { 'terminate:3': 'fail' }],
    ['stop sddm', 'services', 'fail', { 'stop:sddm.service': 'fail' }],
    ['wait for holders', 'services', 'linger', { '912': -1 }],
    ['unbind fbcon', 'kernel', 'fail', { 'bindVtcon:0': 'EIO' }],
    ['release efifb', 'kernel', 'fail', { 'unbindPlatform:efi-framebuffer.0': 'EIO' }],
    ['unload nvidia_drm', 'kernel', 'fail', { 'unloadModule:nvidia_drm': 'EIO' }],
    ['unload nvidia_modeset', 'kernel', 'fail', { 'unloadModule:nvidia_modeset': 'EIO' }],
    ['unload nvidia_uvm', 'kernel', 'fail', { 'unloadModule:nvidia_uvm': 'EIO' }],
    ['unload nvidia', 'kernel', 'fail', { 'unloadModule:nvidia': 'EIO' }],
  ];
  for (const [what, file, key, value] of failures) {
    it(what, async () => {
      const root = host('single-nvidia');
      tweak(root, file, (d) => {
        d[key] = value;
      });
      const cfg = join(root, 'etc/qemu-hook/config.yaml');
      writeFileSync(cfg, readFileSync(cfg, 'utf8').replace('timeout: 5', 'timeout: 1'));
      const r = await prepare(root);
      expect(r.exitCode).toBe(1);
      expect(r.stderr[0]).toMatch(/hand-over step \d+ .* failed/);
      expect(await differencesFromStart(root, 'single-nvidia')).toEqual([]);
      expect(stateOf(root).handovers).toBeUndefined();
    });
  }

  it('the detach failing after the hand-over gives the desktop back too', async () => {
    const root = host('single-amd');
    writeFileSync(
      join(root, 'var/lib/qemu-hook-fixture/faults.json'),
      JSON.stringify([{ op: 'detach', address: '0000:01:00.1' }]),
    );
    const r = await prepare(root);
    expect(r.exitCode).toBe(1);
    expect(await differencesFromStart(root, 'single-amd')).toEqual([]);
  });
});

describe('a crash at every hand-over point, then release, brings everything back', () => {
  const points = HANDOVER_FAULT_POINTS.filter((p) => !p.startsWith('handover-giveback-'));
  for (const point of points) {
    it(point, async () => {
      const root = host('single-nvidia');
      // A crash ends the hook where it is (nothing after it runs): libvirt then calls release.
      const r = await prepare(root, { faults: crashAt(point) });
      expect(r.stderr[0]).toMatch(/crash at/);
      const back = await release(root);
      expect(back.exitCode).toBe(0);
      expect(await differencesFromStart(root, 'single-nvidia')).toEqual([]);
      expect(stateOf(root).handovers).toBeUndefined();
      expect(stateOf(root).records).toEqual([]);
    });
  }
});

describe('give-back', () => {
  it('a failing give-back step is kept for recover while the others still run; a new start waits for recover', async () => {
    const root = host('single-nvidia');
    expect((await prepare(root)).exitCode).toBe(0);
    tweak(root, 'services', (s) => {
      s['fail'] = { 'start:sddm.service': 'fail' };
    });
    expect((await release(root)).exitCode).toBe(0);
    // Everything else is back: the daemon runs, fbcon is bound, the modules are loaded.
    expect(services(root)['nvidia-persistenced.service']).toBe('active');
    expect(services(root)['sddm.service']).toBe('inactive');
    expect(readFileSync(join(root, 'sys/class/vtconsole/vtcon1/bind'), 'utf8')).toBe('1\n');
    expect(existsSync(join(root, 'sys/module/nvidia_drm'))).toBe(true);
    expect(stateOf(root).handovers?.map((h) => h.target)).toEqual(['sddm.service']);

    const again = await prepare(root);
    expect(again.exitCode).toBe(1);
    expect(again.stderr[0]).toMatch(
      /an earlier hand-over of gpu-vm was not fully given back \(sddm\.service\): run qemu-hook recover first/,
    );

    tweak(root, 'services', (s) => {
      delete s['fail'];
    });
    expect((await release(root)).exitCode).toBe(0);
    expect(await differencesFromStart(root, 'single-nvidia')).toEqual([]);
  });
});

describe('services stopped one after the other', () => {
  // single-nvidia with a second GPU daemon listed next to nvidia-persistenced: steps 1 and 2.
  const twoDaemons = (root: string) => {
    tweak(root, 'services', (s) => {
      (s['units'] as Record<string, string>)['nvidia-powerd.service'] = 'active';
    });
    const cfg = join(root, 'etc/qemu-hook/config.yaml');
    writeFileSync(
      cfg,
      readFileSync(cfg, 'utf8').replace(
        'services: [nvidia-persistenced]',
        'services: [nvidia-persistenced, nvidia-powerd]',
      ),
    );
  };

  it('are stopped together: one state write records both before either stops, and both come back', async () => {
    const root = host('single-nvidia');
    twoDaemons(root);
    let recorded: string[] | undefined;
    const r = await prepare(root, {
      faults: (p) => {
        if (p === 'handover-record-stop-service' && recorded === undefined)
          recorded = (stateOf(root).handovers ?? []).map((h) => `${h.step} ${h.target} ${h.phase}`);
      },
    });
    expect(r.stderr).toEqual([]);
    expect(r.exitCode).toBe(0);
    expect(recorded).toEqual(['1 nvidia-persistenced.service acting', '2 nvidia-powerd.service acting']);
    expect(services(root)['nvidia-powerd.service']).toBe('inactive');
    expect(services(root)['nvidia-persistenced.service']).toBe('inactive');

    expect((await release(root)).exitCode).toBe(0);
    expect(services(root)['nvidia-powerd.service']).toBe('active');
    expect(await differencesFromStart(root, 'single-nvidia')).toEqual([]);
  });

  it('one of them failing to stop refuses the start naming both steps, and the other is started again', async () => {
    const root = host('single-nvidia');
    twoDaemons(root);
    tweak(root, 'services', (s) => {
      s['fail'] = { 'stop:nvidia-powerd.service': 'fail' };
    });
    const r = await prepare(root);
    expect(r.exitCode).toBe(1);
    expect(r.stderr[0]).toMatch(
      /hand-over steps 1, 2 \(stop nvidia-persistenced\.service, stop nvidia-powerd\.service\) failed/,
    );
    expect(services(root)['nvidia-persistenced.service']).toBe('active');
    expect(services(root)['nvidia-powerd.service']).toBe('active');
    expect(await differencesFromStart(root, 'single-nvidia')).toEqual([]);
    expect(stateOf(root).handovers).toBeUndefined();
  });
});
