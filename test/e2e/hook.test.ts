// The real hook, installed by `install.sh --root` on a copy of the fixture host `workstation`, run by
// a real (private) libvirtd for tiny TCG domains. The installed hook reads the fixture root and
// moves only the fixture's `driver` links: nothing of this machine is ever detached.
//
// The domains' <hostdev managed='no'> entries name fixture addresses this machine lacks, so libvirt
// itself fails such a start after our prepare hook ("host doesn't support passthrough" or "device
// not found"); then it calls stopped and release, which is what these tests rely on.
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FixtureDriverControl } from '../../src/host/fixture-driver-control.js';
import { PciAddress } from '../../src/model/pci-address.js';
import { saveState } from '../../src/state/file.js';
import { canRunLibvirtd, type PrivateLibvirtd, startLibvirtd } from './harness/index.js';
import { defineTiny, hookCallsLogged, ourLines, qemuPid, timed, waitFor } from './support/domains.js';
import {
  copyFixtureHost,
  driverJournal,
  fixtureBindings,
  fixtureDriver,
  type HostCopy,
  hookLog,
  hookSetting,
  installOk,
  setPreferredDriver,
  shQuote,
  stateRecords,
  writeConfig,
  writeVmScript,
} from './support/installed-host.js';
import { assertNotOnThisMachine, realPciBindings } from './support/real-sysfs.js';

const GPU = '0000:01:00.0';
const GPU_AUDIO = '0000:01:00.1';
const NVME = '0000:02:00.0'; // the controller of the fixture's root filesystem
const CYCLE = ['prepare begin', 'start begin', 'started begin', 'stopped end', 'release end'];

// The exact line `virsh start` must show for the refused domain (the fixture's pci.ids names the disk).
const REFUSAL =
  "qemu-hook: e2e-refused: disk: refusing to give 0000:02:00.0 (Samsung Electronics Co Ltd NVMe SSD Controller SM981/PM981/PM983) to the VM: it is the controller of the root filesystem's disk (/dev/nvme0n1p2, nvme0n1p2)";

function config(uri: string, extra = ''): string {
  return `# written by test/e2e/hook.test.ts
domains:
  e2e-pass:
    devices:
      - name: gpu
        match: { vendor: "10de", device: "2204" }
        functions: all
  e2e-refused:
    devices:
      - name: disk
        match: { vendor: "144d", device: "a808" }
${extra}libvirt: { uri: "${uri}" }
log: { level: info, file: /var/log/libvirt/qemu-hook.log }
`;
}

/** A per-VM script that appends `<label> <argv> <driver of each address> xml=<sha of stdin>` to `out`. */
function recorder(
  host: HostCopy,
  out: string,
  label: string,
  opts: { saveXml?: string; copyState?: string; exit?: number } = {},
): string {
  const dev = (a: string) => shQuote(join(host.root, 'sys/bus/pci/devices', a));
  return `#!/bin/sh
drv() { l=$(readlink "$1/driver") && basename "$l" || echo none; }
xml=$(cat)
${opts.saveXml ? `printf '%s\\n' "$xml" > ${shQuote(opts.saveXml)}\n` : ''}${opts.copyState ? `cp ${shQuote(host.stateFile)} ${shQuote(opts.copyState)}\n` : ''}sha=$(printf '%s' "$xml" | sha256sum | cut -c1-16)
printf '%s|%s|gpu=%s audio=%s|xml=%s|%s\\n' ${shQuote(label)} "$*" "$(drv ${dev(GPU)})" "$(drv ${dev(GPU_AUDIO)})" "$sha" "$(printf '%s\\n' "$xml" | sed -n 1p)" >> ${shQuote(out)}
exit ${opts.exit ?? 0}
`;
}

interface Line {
  label: string;
  argv: string;
  drivers: string;
  xml: string;
  firstLine: string;
}

function lines(file: string): Line[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const [label = '', argv = '', drivers = '', xml = '', firstLine = ''] = l.split('|');
      return { label, argv, drivers, xml, firstLine };
    });
}

describe.skipIf(!canRunLibvirtd())('the installed hook under a real libvirtd', { timeout: 180_000 }, () => {
  let host: HostCopy;
  let out: string;
  let daemon: PrivateLibvirtd | undefined;
  let realBefore: ReturnType<typeof realPciBindings>;
  let fixtureBefore: Record<string, string | null>;

  const d = () => {
    if (!daemon) throw new Error('the private libvirtd did not start');
    return daemon;
  };

  beforeAll(async () => {
    realBefore = realPciBindings();
    host = copyFixtureHost('workstation');
    assertNotOnThisMachine([GPU, GPU_AUDIO, NVME]);
    out = join(host.work, 'out');
    mkdirSync(out);
    await installOk(host.root);
    // The simulated kernel prefers another driver for the GPU and none for its audio function:
    // only an explicit bind gives them back to the drivers they had.
    setPreferredDriver(host, GPU, 'nouveau');
    setPreferredDriver(host, GPU_AUDIO, null);
    daemon = await startLibvirtd({ etcDir: host.etcLibvirt });
    console.log(`[e2e timing] daemon first connection: ${daemon.timings().firstConnectMs} ms`);
    writeConfig(host, config(daemon.uri));
    fixtureBefore = fixtureBindings(host.root);
  }, 240_000);

  afterAll(async () => {
    try {
      await daemon?.stop();
    } finally {
      host?.cleanup();
    }
  }, 120_000);

  it('installs a hook that has the fixture root baked in and that libvirtd finds', () => {
    expect(hookSetting(host.hookFile, 'ROOT')).toBe(host.root);
    const program = hookSetting(host.hookFile, 'PROGRAM') ?? '';
    expect(program).toBe(join(host.root, 'usr/local/lib/qemu-hook'));
    expect(existsSync(join(program, 'dist/cli/main.cjs'))).toBe(true);
    expect(hookSetting(host.hookFile, 'NODE')).toMatch(/^\/.*node/);
    expect(d().daemonLog()).toContain('Found hook script /etc/libvirt/hooks/qemu');
  });

  it('runs for every event of an unconfigured domain (its per-VM scripts show it) and touches nothing', async () => {
    const events = join(out, 'e2e-plain.events');
    // One file per event: the `qemu.d/<vm>/<op>/<subop>` single-file layout.
    for (const ev of CYCLE)
      writeVmScript(host, `e2e-plain/${ev.replace(' ', '/')}`, recorder(host, events, ev));
    await defineTiny(d(), host.work, 'e2e-plain');

    await timed('start of an unconfigured domain with per-VM scripts', () =>
      d().virshOk(['start', 'e2e-plain']),
    );
    expect((await d().virshOk(['domstate', 'e2e-plain'])).trim()).toBe('running');
    await d().virshOk(['destroy', 'e2e-plain']);

    const seen = lines(events);
    expect(seen.map((l) => l.argv)).toEqual(CYCLE.map((ev) => `e2e-plain ${ev} -`));
    for (const l of seen) {
      expect(l.firstLine).toMatch(/^<domain type='qemu'/);
      expect(l.drivers).toBe('gpu=nvidia audio=snd_hda_intel');
    }
    expect(hookCallsLogged(d(), 'e2e-plain')).toEqual(CYCLE);
    expect(stateRecords(host)).toEqual([]);
    expect(driverJournal(host)).toEqual([]);
    expect(fixtureBindings(host.root)).toEqual(fixtureBefore);
  });

  it('lets an unconfigured domain without scripts start and stop, logging nothing and touching nothing', async () => {
    await defineTiny(d(), host.work, 'e2e-quiet');
    await timed('start of an unconfigured domain (fast path)', () => d().virshOk(['start', 'e2e-quiet']));
    await d().virshOk(['destroy', 'e2e-quiet']);

    expect(hookCallsLogged(d(), 'e2e-quiet')).toEqual(CYCLE);
    expect(hookLog(host).filter((l) => l.domain === 'e2e-quiet')).toEqual([]);
    expect(stateRecords(host)).toEqual([]);
    expect(driverJournal(host)).toEqual([]);
    expect(fixtureBindings(host.root)).toEqual(fixtureBefore);
  });

  it("refuses a start whose plan is refused, with our message in virsh's stderr; release is a no-op", async () => {
    await defineTiny(d(), host.work, 'e2e-refused', [{ address: NVME, alias: 'ua-qemuhook-disk' }]);

    const r = await timed('refused start (virsh start, plan refused)', () =>
      d().virsh(['start', 'e2e-refused']),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("error: Failed to start domain 'e2e-refused'");
    expect(r.stderr).toContain(
      `/etc/libvirt/hooks/qemu e2e-refused prepare begin -) unexpected exit status 1: ${REFUSAL}\n`,
    );
    expect(ourLines(r.stderr)).toEqual([REFUSAL]);

    // libvirt still called stopped and release; they found nothing to give back.
    expect(hookCallsLogged(d(), 'e2e-refused')).toEqual(['prepare begin', 'stopped end', 'release end']);
    expect((await d().virshOk(['domstate', 'e2e-refused'])).trim()).toBe('shut off');
    expect(stateRecords(host)).toEqual([]);
    expect(driverJournal(host)).toEqual([]);
    expect(fixtureBindings(host.root)).toEqual(fixtureBefore);
    const mine = hookLog(host).filter((l) => l.domain === 'e2e-refused');
    expect(mine.map((l) => l.msg)).toEqual(['start refused by plan']);
  });

  it('detaches a passing plan, and gives every device back to its original driver when libvirt fails the start', async () => {
    const trail = join(out, 'e2e-pass.trail');
    const xmlSeen = join(out, 'e2e-pass.prepare.xml');
    const stateAtStopped = join(out, 'e2e-pass.state-at-stopped.json');
    // Directory layout, run in name order: 10 before 20; prepare scripts run before the detach,
    // release scripts after the give-back.
    writeVmScript(host, 'e2e-pass/prepare/begin/20-second', recorder(host, trail, '20-second'));
    writeVmScript(
      host,
      'e2e-pass/prepare/begin/10-first',
      recorder(host, trail, '10-first', { saveXml: xmlSeen }),
    );
    writeVmScript(host, 'e2e-pass/prepare/begin/15-not-executable', recorder(host, trail, '15-never'), 0o644);
    writeVmScript(
      host,
      'e2e-pass/stopped/end/50-snapshot',
      recorder(host, trail, 'stopped', { copyState: stateAtStopped }),
    );
    writeVmScript(host, 'e2e-pass/release/end/90-after', recorder(host, trail, 'release'));
    await defineTiny(d(), host.work, 'e2e-pass', [
      { address: GPU, alias: 'ua-qemuhook-gpu' },
      { address: GPU_AUDIO, alias: 'ua-qemuhook-gpu-1' },
    ]);

    const r = await timed(
      'passing start (virsh start: prepare detaches, libvirt fails, release gives back)',
      () => d().virsh(['start', 'e2e-pass']),
    );
    // libvirt's own failure, after our prepare: not ours.
    console.log(`[e2e] libvirt's own failure of the start, after our prepare passed:\n${r.stderr.trim()}`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("error: Failed to start domain 'e2e-pass'");
    expect(r.stderr).not.toContain('Hook script execution failed');
    expect(ourLines(r.stderr)).toEqual([]);
    expect(hookCallsLogged(d(), 'e2e-pass')).toEqual(['prepare begin', 'stopped end', 'release end']);

    const t = lines(trail);
    expect(t.map((l) => `${l.label}: ${l.argv}`)).toEqual([
      '10-first: e2e-pass prepare begin -',
      '20-second: e2e-pass prepare begin -',
      'stopped: e2e-pass stopped end -',
      'release: e2e-pass release end -',
    ]);
    // Before the detach, while libvirt held the devices, after the give-back.
    expect(t.map((l) => l.drivers)).toEqual([
      'gpu=nvidia audio=snd_hda_intel',
      'gpu=nvidia audio=snd_hda_intel',
      'gpu=vfio-pci audio=vfio-pci',
      'gpu=nvidia audio=snd_hda_intel',
    ]);
    // Both prepare scripts got the same XML on stdin: this domain's live definition.
    expect(t[0]?.xml).toBe(t[1]?.xml);
    const xml = readFileSync(xmlSeen, 'utf8');
    expect(xml).toContain('<name>e2e-pass</name>');
    expect(xml).toContain("<alias name='ua-qemuhook-gpu'/>");
    expect(xml).toContain("<address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>");

    // The state file while the domain held the devices: one record per device, with its original driver.
    const held = JSON.parse(readFileSync(stateAtStopped, 'utf8')) as { records: Record<string, unknown>[] };
    expect(held.records.map((x) => [x['domain'], x['address'], x['originalDriver'], x['phase']])).toEqual([
      ['e2e-pass', GPU, 'nvidia', 'detached'],
      ['e2e-pass', GPU_AUDIO, 'snd_hda_intel', 'detached'],
    ]);

    // The kernel's pick (nouveau, none) was not the original: the hook bound the original explicitly.
    const journal = driverJournal(host);
    expect(journal.filter((j) => j.address === GPU)).toEqual([
      { op: 'detach', address: GPU, from: 'nvidia', to: 'vfio-pci' },
      { op: 'reattach', address: GPU, from: 'vfio-pci', to: 'nouveau' },
      { op: 'bindDriver', address: GPU, from: 'nouveau', to: 'nvidia' },
    ]);
    expect(journal.filter((j) => j.address === GPU_AUDIO)).toEqual([
      { op: 'detach', address: GPU_AUDIO, from: 'snd_hda_intel', to: 'vfio-pci' },
      { op: 'reattach', address: GPU_AUDIO, from: 'vfio-pci', to: null },
      { op: 'bindDriver', address: GPU_AUDIO, from: null, to: 'snd_hda_intel' },
    ]);
    expect(journal).toHaveLength(6);
    expect(stateRecords(host)).toEqual([]);
    expect(fixtureBindings(host.root)).toEqual(fixtureBefore);
  });

  it('refuses the start, before any detach, when a per-VM prepare script is writable by others', async () => {
    const trail = join(out, 'e2e-pass.trail');
    const before = lines(trail).length;
    const journalBefore = driverJournal(host).length;
    const unsafe = writeVmScript(
      host,
      'e2e-pass/prepare/begin/15-unsafe',
      recorder(host, trail, '15-unsafe'),
      0o775,
    );
    try {
      const r = await d().virsh(['start', 'e2e-pass']);
      expect(r.code).not.toBe(0);
      const ours = ourLines(r.stderr);
      expect(ours).toHaveLength(1);
      expect(ours[0]).toMatch(
        /^qemu-hook: e2e-pass: per-VM script e2e-pass\/prepare\/begin\/15-unsafe: refused to run .*15-unsafe: it is writable by group or others \(mode 0775\)$/,
      );
      // 10-first ran, the unsafe one and everything after it did not; nothing was detached.
      expect(
        lines(trail)
          .slice(before)
          .map((l) => l.label),
      ).toEqual(['10-first', 'stopped', 'release']);
      expect(driverJournal(host)).toHaveLength(journalBefore);
      expect(stateRecords(host)).toEqual([]);
      expect(fixtureBindings(host.root)).toEqual(fixtureBefore);
    } finally {
      rmSync(unsafe);
    }
  });

  it('gives back, when a running domain stops, what the state file holds for it, even if the config does not name it', async () => {
    await d().virshOk(['start', 'e2e-quiet']);
    // What a prepare of this domain would have left: the GPU on vfio-pci and its record.
    const bootId = readFileSync(join(host.root, 'proc/sys/kernel/random/boot_id'), 'utf8').trim();
    await new FixtureDriverControl(host.root).detach(PciAddress.parse(GPU));
    await saveState(host.stateFile, {
      version: 1,
      records: [
        {
          domain: 'e2e-quiet',
          address: GPU,
          originalDriver: 'nvidia',
          bootId,
          phase: 'detached',
          since: new Date().toISOString(),
          entry: 'gpu',
        },
      ],
    });
    expect(fixtureDriver(host.root, GPU)).toBe('vfio-pci');
    const journalBefore = driverJournal(host).length;

    await d().virshOk(['destroy', 'e2e-quiet']);
    // `virsh destroy` returns once QEMU is gone; release runs right after.
    await waitFor(
      'the release of e2e-quiet',
      () => (stateRecords(host).length === 0 ? true : undefined),
      30_000,
    );
    expect(hookCallsLogged(d(), 'e2e-quiet').slice(-2)).toEqual(['stopped end', 'release end']);
    expect(fixtureDriver(host.root, GPU)).toBe('nvidia');
    expect(
      driverJournal(host)
        .slice(journalBefore)
        .map((j) => `${j.op} ${j.from}→${j.to}`),
    ).toEqual(['reattach vfio-pci→nouveau', 'bindDriver nouveau→nvidia']);
    expect(fixtureBindings(host.root)).toEqual(fixtureBefore);
  });

  it('exits 0 on reconnect after a daemon restart, with a broken config and a failing script: the VM keeps running', async () => {
    const events = join(out, 'e2e-plain.events');
    writeVmScript(host, 'e2e-plain/reconnect/begin', recorder(host, events, 'reconnect begin', { exit: 1 }));
    await d().virshOk(['start', 'e2e-plain']);
    const pid = qemuPid(d(), 'e2e-plain');
    // Not even YAML, and it names the running domain.
    writeConfig(host, 'domains:\n  e2e-plain: { devices: [ { name: gpu, match: {\n');
    try {
      await timed('daemon restart with one running domain', () => d().restart());

      expect((await d().virshOk(['domstate', 'e2e-plain'])).trim()).toBe('running');
      expect(qemuPid(d(), 'e2e-plain')).toBe(pid);
      expect(hookCallsLogged(d(), 'e2e-plain').slice(-1)).toEqual(['reconnect begin']);
      expect(lines(events).at(-1)?.argv).toBe('e2e-plain reconnect begin -');
      // The hook itself ran (it ran the script), saw the failure, and still let the VM live.
      const reconnect = hookLog(host).filter((l) => l.domain === 'e2e-plain' && l.op === 'reconnect');
      expect(reconnect.map((l) => [l.msg, l['outcome']])).toContainEqual(['per-VM script', 'failed']);
    } finally {
      writeConfig(host, config(d().uri));
    }
    await d().virshOk(['destroy', 'e2e-plain']);
    expect(stateRecords(host)).toEqual([]);
  }, 240_000);

  it('measures (prints, never asserts) unconfigured, refused and passing starts', async () => {
    const ms: Record<string, number[]> = { unconfigured: [], refused: [], passing: [] };
    const sample = async (kind: string, name: string) => {
      const t0 = performance.now();
      const r = await d().virsh(['start', name]);
      ms[kind]?.push(performance.now() - t0);
      return r;
    };
    for (let i = 0; i < 5; i++) {
      expect((await sample('unconfigured', 'e2e-quiet')).code).toBe(0);
      await d().virshOk(['destroy', 'e2e-quiet']);
      expect(ourLines((await sample('refused', 'e2e-refused')).stderr)).toEqual([REFUSAL]);
      expect(ourLines((await sample('passing', 'e2e-pass')).stderr)).toEqual([]);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
    for (const [kind, xs] of Object.entries(ms)) {
      console.log(
        `[e2e timing] virsh start, ${kind}: median ${Math.round(median(xs))} ms of ${xs.map(Math.round).join(', ')}`,
      );
    }
    expect(stateRecords(host)).toEqual([]);
    expect(fixtureBindings(host.root)).toEqual(fixtureBefore);
  }, 240_000);

  it("did all of it with the fixture driver control: this machine's PCI devices are as they were", () => {
    // Only FixtureDriverControl writes the journal; every address in it is a fixture device.
    const journal = driverJournal(host);
    expect(journal.length).toBeGreaterThan(0);
    for (const j of journal) expect(existsSync(join(host.root, 'sys/bus/pci/devices', j.address))).toBe(true);
    expect(hookLog(host).filter((l) => /virNodeDevice|nodedev/i.test(JSON.stringify(l)))).toEqual([]);
    expect(realPciBindings()).toEqual(realBefore);
  });
});
