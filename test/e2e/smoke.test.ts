// A real, private libvirtd runs a stand-in hook: proves the harness the e2e tests stand on, and the
// libvirt behaviour they rely on (event order, reconnect, how a refused prepare reaches virsh).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  canRunLibvirtd,
  eventsOf,
  type PrivateLibvirtd,
  pciHostdevXml,
  readHookCalls,
  recordingHookScript,
  startLibvirtd,
  tinyDomainXml,
  writeHookScript,
} from './harness/index.js';

// An address no machine has: bus 0xee, slot 0x1f, function 7.
const ABSENT_PCI = '0000:ee:1f.7';
const REFUSAL = 'qemu-hook: refusing smoke-refused: 0000:ee:1f.7 is not on this host';

describe.skipIf(!canRunLibvirtd())('a private libvirtd and its qemu hook', { timeout: 120_000 }, () => {
  let work: string;
  let hookLog: string;
  let daemon: PrivateLibvirtd | undefined;

  const d = () => {
    if (!daemon) throw new Error('the private libvirtd did not start');
    return daemon;
  };

  const define = async (name: string, xml: string) => {
    const file = join(work, `${name}.xml`);
    writeFileSync(file, xml);
    await d().virshOk(['define', file]);
  };

  const timed = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const result = await f();
    console.log(`[e2e timing] ${what}: ${Math.round(performance.now() - t0)} ms`);
    return result;
  };

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'qemu-hook-smoke-'));
    hookLog = join(work, 'hook.log');
    const hooks = join(work, 'hooks');
    mkdirSync(hooks);
    writeHookScript(
      join(hooks, 'qemu'),
      recordingHookScript(hookLog, { refusePrepare: { domain: 'smoke-refused', stderr: REFUSAL } }),
    );
    daemon = await startLibvirtd({ hooksDir: hooks });
    console.log(`[e2e timing] daemon first connection: ${daemon.timings().firstConnectMs} ms`);
  }, 240_000);

  afterAll(async () => {
    try {
      await daemon?.stop();
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }, 120_000);

  it('sees no network and no domain of the machine', async () => {
    expect((await d().virshOk(['list', '--all', '--name'])).trim()).toBe('');
    expect((await d().virshOk(['net-list', '--all', '--name'])).trim()).toBe('');
  });

  it('runs the hook for prepare, start, started, then stopped, release', async () => {
    await define('smoke-a', tinyDomainXml('smoke-a'));
    await timed('first domain start', () => d().virshOk(['start', 'smoke-a']));
    expect((await d().virshOk(['domstate', 'smoke-a'])).trim()).toBe('running');
    await d().virshOk(['destroy', 'smoke-a']);
    await timed('second domain start', () => d().virshOk(['start', 'smoke-a']));
    await d().virshOk(['destroy', 'smoke-a']);

    const cycle = ['prepare begin', 'start begin', 'started begin', 'stopped end', 'release end'];
    expect(eventsOf(readHookCalls(hookLog), 'smoke-a')).toEqual([...cycle, ...cycle]);
    for (const call of readHookCalls(hookLog).filter((c) => c.domain === 'smoke-a')) {
      expect(call.firstLine).toMatch(/^<domain type='qemu'/);
    }
  });

  it('runs the hook with reconnect begin for a running domain after a daemon restart', async () => {
    await define('smoke-b', tinyDomainXml('smoke-b'));
    await d().virshOk(['start', 'smoke-b']);
    const pidBefore = d().pid();
    await d().restart();
    console.log(`[e2e timing] daemon restart, first connection: ${d().timings().firstConnectMs} ms`);

    expect(d().pid()).not.toBe(pidBefore);
    expect(eventsOf(readHookCalls(hookLog), 'smoke-b')).toEqual([
      'prepare begin',
      'start begin',
      'started begin',
      'reconnect begin',
    ]);
    expect((await d().virshOk(['domstate', 'smoke-b'])).trim()).toBe('running');
    await d().virshOk(['destroy', 'smoke-b']);
    expect(eventsOf(readHookCalls(hookLog), 'smoke-b').slice(-2)).toEqual(['stopped end', 'release end']);
  }, 240_000);

  it('defines a domain whose managed="no" PCI hostdev is not on this machine', async () => {
    await define('smoke-refused', tinyDomainXml('smoke-refused', { hostdevs: pciHostdevXml(ABSENT_PCI) }));
    const xml = await d().virshOk(['dumpxml', '--inactive', 'smoke-refused']);
    expect(xml).toContain("<address domain='0x0000' bus='0xee' slot='0x1f' function='0x7'/>");
  });

  it("shows a refusing prepare hook's stderr in virsh start, then runs stopped and release", async () => {
    const r = await d().virsh(['start', 'smoke-refused']);
    console.log(`[e2e] virsh start with a refusing prepare hook, exit ${r.code}, stderr:\n${r.stderr}`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("error: Failed to start domain 'smoke-refused'");
    expect(r.stderr).toContain('Hook script execution failed');
    expect(r.stderr).toContain(
      '/etc/libvirt/hooks/qemu smoke-refused prepare begin -) unexpected exit status 1: ',
    );
    expect(r.stderr).toContain(REFUSAL);
    expect(eventsOf(readHookCalls(hookLog), 'smoke-refused')).toEqual([
      'prepare begin',
      'stopped end',
      'release end',
    ]);
    expect((await d().virshOk(['domstate', 'smoke-refused'])).trim()).toBe('shut off');
  });

  it('notices a removed, then re-added hook only once reloadHooks() has run', async () => {
    const hook = join(d().etcDir, 'hooks', 'qemu');
    const aside = join(work, 'qemu.aside');
    await define('smoke-c', tinyDomainXml('smoke-c'));
    renameSync(hook, aside);
    await d().reloadHooks();
    await d().virshOk(['start', 'smoke-c']); // without the reload, libvirt would fail to run the missing hook
    await d().virshOk(['destroy', 'smoke-c']);
    expect(eventsOf(readHookCalls(hookLog), 'smoke-c')).toEqual([]);

    renameSync(aside, hook);
    await d().reloadHooks();
    await d().virshOk(['start', 'smoke-c']);
    expect(eventsOf(readHookCalls(hookLog), 'smoke-c')).toEqual([
      'prepare begin',
      'start begin',
      'started begin',
    ]);
  });

  it("keeps definitions in the private /etc/libvirt, not the machine's", () => {
    const defined = readdirSync(join(d().etcDir, 'qemu')).filter((f) => f.endsWith('.xml'));
    expect(defined.sort()).toEqual(['smoke-a.xml', 'smoke-b.xml', 'smoke-c.xml', 'smoke-refused.xml']);
    expect(existsSync('/etc/libvirt/qemu/smoke-a.xml')).toBe(false);
  });
});
