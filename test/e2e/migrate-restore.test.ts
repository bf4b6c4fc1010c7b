// migrate and restore under real libvirtds: the two events whose hook stdout replaces the XML.
//
// Migration: two private libvirtds on this machine (different host UUIDs, else libvirt refuses
// "Attempt to migrate guest to the same host"). The source has no hook; the destination has the
// hook installed by `install.sh --root` on a copy of the fixture host `workstation-moved`, where the
// GPU sits at 0000:02:00.0 (the source's layout, `workstation`, had it at 0000:01:00.0).
// `virsh migrate --offline --persistent` moves the definition only: this machine has no IOMMU
// ("host doesn't support passthrough of host PCI devices"), so no domain holding a PCI hostdev can
// run here, and libvirt refuses to save or live-migrate a running domain that holds one anyway
// ("cannot migrate a domain with <hostdev mode='subsystem' type='pci'>").
//
// Restore: `virsh save` + `virsh restore` of a running domain named in the config but holding no
// device (a PCI hostdev cannot run here, see above; this machine has no USB bus either): the hook
// runs for `restore begin`, prints nothing, and libvirt restores the domain unchanged.
//
// What the hook printed is read from libvirtd's own debug log of the hook's command (util.command).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunLibvirtd, type PrivateLibvirtd, startLibvirtd, tinyDomainXml } from './harness/index.js';
import { defineTiny, hookCallsLogged, hostdevAddresses, timed } from './support/domains.js';
import {
  copyFixtureHost,
  driverJournal,
  fixtureBindings,
  type HostCopy,
  hookLog,
  installOk,
  stateRecords,
  writeConfig,
} from './support/installed-host.js';
import { assertNotOnThisMachine, realPciBindings } from './support/real-sysfs.js';

const SOURCE_LAYOUT = { gpu: '0000:01:00.0', audio: '0000:01:00.1' }; // `workstation`
const HERE = { gpu: '0000:02:00.0', audio: '0000:02:00.1' }; // `workstation-moved`

function config(uri: string): string {
  const gpuDomain = (name: string) => `  ${name}:
    devices:
      - name: gpu
        match: { vendor: "10de", device: "2204" }
        functions: all
`;
  return `# written by test/e2e/migrate-restore.test.ts
domains:
${gpuDomain('e2e-mig-moved')}${gpuDomain('e2e-mig-same')}  e2e-restore: { devices: [] }
libvirt: { uri: "${uri}" }
log: { level: info, file: /var/log/libvirt/qemu-hook.log }
`;
}

/** What the hook printed on stdout for `<domain> <op> begin`, from libvirtd's util.command debug log. */
function hookStdout(daemon: PrivateLibvirtd, domain: string, op: string): string[] {
  const log = daemon.daemonLog();
  const outs: string[] = [];
  const call = `/etc/libvirt/hooks/qemu ${domain} ${op} begin -`;
  // virCommandRun logs "Result <status>, stdout: '<text>' stderr: '<text>'" after the command it ran.
  for (let at = log.indexOf(call); at !== -1; at = log.indexOf(call, at + 1)) {
    const rest = log.slice(at);
    const m = /Result [^\n]*?, stdout: '([\s\S]*?)' stderr: '/.exec(rest);
    if (m) outs.push(m[1] ?? '');
  }
  return outs;
}

describe.skipIf(!canRunLibvirtd())('migrate and restore under real libvirtds', { timeout: 240_000 }, () => {
  let host: HostCopy;
  let source: PrivateLibvirtd | undefined;
  let dest: PrivateLibvirtd | undefined;
  let realBefore: ReturnType<typeof realPciBindings>;
  let fixtureBefore: Record<string, string | null>;

  const src = () => {
    if (!source) throw new Error('the source libvirtd did not start');
    return source;
  };
  const dst = () => {
    if (!dest) throw new Error('the destination libvirtd did not start');
    return dest;
  };

  beforeAll(async () => {
    realBefore = realPciBindings();
    assertNotOnThisMachine([...Object.values(SOURCE_LAYOUT), ...Object.values(HERE)]);
    host = copyFixtureHost('workstation-moved');
    await installOk(host.root);
    [source, dest] = await Promise.all([
      startLibvirtd({ hostUuid: '5e5e5e5e-0000-4000-8000-00000000000a' }),
      startLibvirtd({
        etcDir: host.etcLibvirt,
        hostUuid: '5e5e5e5e-0000-4000-8000-00000000000b',
        debugLog: '1:util.command',
      }),
    ]);
    writeConfig(host, config(dst().uri));
    fixtureBefore = fixtureBindings(host.root);
  }, 240_000);

  afterAll(async () => {
    try {
      await Promise.all([source?.stop(), dest?.stop()]);
    } finally {
      host?.cleanup();
    }
  }, 120_000);

  it('corrects an incoming migration whose GPU sits elsewhere on this host: libvirt defines the printed XML', async () => {
    await defineTiny(src(), host.work, 'e2e-mig-moved', [
      { address: SOURCE_LAYOUT.gpu, alias: 'ua-qemuhook-gpu' },
      { address: SOURCE_LAYOUT.audio, alias: 'ua-qemuhook-gpu-1' },
    ]);
    await timed('offline migration with a correction', () =>
      src().virshOk(['migrate', '--offline', '--persistent', 'e2e-mig-moved', dst().uri]),
    );

    expect(hookCallsLogged(dst(), 'e2e-mig-moved')).toEqual(['migrate begin']);
    const printed = hookStdout(dst(), 'e2e-mig-moved', 'migrate');
    expect(printed).toHaveLength(1);
    expect(hostdevAddresses(printed[0] ?? '')).toEqual({
      'ua-qemuhook-gpu': HERE.gpu,
      'ua-qemuhook-gpu-1': HERE.audio,
    });
    // libvirt took our stdout: the destination's definition names this host's addresses.
    expect(hostdevAddresses(await dst().virshOk(['dumpxml', '--inactive', 'e2e-mig-moved']))).toEqual({
      'ua-qemuhook-gpu': HERE.gpu,
      'ua-qemuhook-gpu-1': HERE.audio,
    });
    const logged = hookLog(host).filter((l) => l.domain === 'e2e-mig-moved');
    expect(logged.map((l) => l.msg)).toEqual(['migrate: XML corrected for this host']);
    expect(logged[0]?.moves).toEqual([
      `gpu: ${SOURCE_LAYOUT.gpu} → ${HERE.gpu}`,
      `gpu-1: ${SOURCE_LAYOUT.audio} → ${HERE.audio}`,
    ]);
  });

  it('prints nothing for an incoming migration whose devices are where the XML says', async () => {
    await defineTiny(src(), host.work, 'e2e-mig-same', [
      { address: HERE.gpu, alias: 'ua-qemuhook-gpu' },
      { address: HERE.audio, alias: 'ua-qemuhook-gpu-1' },
    ]);
    await src().virshOk(['migrate', '--offline', '--persistent', 'e2e-mig-same', dst().uri]);

    expect(hookCallsLogged(dst(), 'e2e-mig-same')).toEqual(['migrate begin']);
    expect(hookStdout(dst(), 'e2e-mig-same', 'migrate')).toEqual(['']);
    expect(hostdevAddresses(await dst().virshOk(['dumpxml', '--inactive', 'e2e-mig-same']))).toEqual({
      'ua-qemuhook-gpu': HERE.gpu,
      'ua-qemuhook-gpu-1': HERE.audio,
    });
    expect(hookLog(host).filter((l) => l.domain === 'e2e-mig-same')).toEqual([]);
  });

  it('restores a saved domain: the hook runs for restore, prints nothing, and the domain runs again', async () => {
    const file = join(host.work, 'e2e-restore.xml');
    writeFileSync(file, tinyDomainXml('e2e-restore'));
    await dst().virshOk(['define', file]);
    await dst().virshOk(['start', 'e2e-restore']);
    const saved = join(host.work, 'e2e-restore.save');
    await timed('virsh save', () => dst().virshOk(['save', 'e2e-restore', saved]));
    expect((await dst().virshOk(['domstate', 'e2e-restore'])).trim()).toBe('shut off');
    await timed('virsh restore', () => dst().virshOk(['restore', saved]));

    expect((await dst().virshOk(['domstate', 'e2e-restore'])).trim()).toBe('running');
    const calls = hookCallsLogged(dst(), 'e2e-restore');
    expect(calls.slice(calls.indexOf('restore begin'))).toEqual([
      'restore begin',
      'prepare begin',
      'start begin',
      'started begin',
    ]);
    expect(hookStdout(dst(), 'e2e-restore', 'restore')).toEqual(['']);
    await dst().virshOk(['destroy', 'e2e-restore']);
  });

  it('left the fixture host and this machine as they were', () => {
    expect(stateRecords(host)).toEqual([]);
    expect(driverJournal(host)).toEqual([]);
    expect(fixtureBindings(host.root)).toEqual(fixtureBefore);
    expect(realPciBindings()).toEqual(realBefore);
  });
});
