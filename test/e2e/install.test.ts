// install.sh --root over the hooks people already have: a foreign hook is kept and still run by
// libvirt (through ours), a VFIO-Tools dispatcher is replaced so per-VM scripts run once, and
// --uninstall puts either back byte for byte. A private libvirtd runs the installed result.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INSTALLED_README } from '../../src/model/paths.js';
import {
  canRunLibvirtd,
  eventsOf,
  type PrivateLibvirtd,
  readHookCalls,
  recordingHookScript,
  startLibvirtd,
} from './harness/index.js';
import { VFIO_TOOLS_DISPATCHER } from './support/dispatchers.js';
import { defineTiny, ourLines } from './support/domains.js';
import {
  copyFixtureHost,
  type HostCopy,
  hookSetting,
  installOk,
  REPO,
  shQuote,
  writeConfig,
  writeVmScript,
} from './support/installed-host.js';

const CYCLE = ['prepare begin', 'start begin', 'started begin', 'stopped end', 'release end'];

const mode = (path: string) => statSync(path).mode & 0o7777;
const isOurs = (path: string) => readFileSync(path, 'utf8').includes('# qemu-hook:program');

/** Puts `text` where a previous tool installed its hook, executable, and returns its bytes. */
function placeHook(host: HostCopy, text: string): Buffer {
  mkdirSync(host.hooksDir, { recursive: true });
  writeFileSync(host.hookFile, text, { mode: 0o755 });
  return readFileSync(host.hookFile);
}

describe.skipIf(!canRunLibvirtd())('install.sh --root over a foreign hook', { timeout: 180_000 }, () => {
  let host: HostCopy;
  let foreign: Buffer;
  let foreignLog: string;
  let daemon: PrivateLibvirtd | undefined;
  const saved = () => join(host.hooksDir, 'qemu.before-qemu-hook');

  beforeAll(() => {
    host = copyFixtureHost('workstation');
    foreignLog = join(host.work, 'foreign.log');
    foreign = placeHook(host, recordingHookScript(foreignLog));
  });

  afterAll(async () => {
    try {
      await daemon?.stop();
    } finally {
      host?.cleanup();
    }
  }, 120_000);

  it('keeps it aside and chains to it; a second run changes nothing', async () => {
    const first = await installOk(host.root);
    expect(first).toContain(`kept the existing hook as ${saved()}`);
    expect(isOurs(host.hookFile)).toBe(true);
    expect(hookSetting(host.hookFile, 'CHAIN')).toBe(saved());
    expect(readFileSync(saved())).toEqual(foreign);
    expect(mode(saved())).toBe(0o755);
    const ours = readFileSync(host.hookFile);

    const second = await installOk(host.root);
    expect(second).not.toContain('kept the existing hook');
    expect(readFileSync(host.hookFile)).toEqual(ours);
    expect(readFileSync(saved())).toEqual(foreign);
    expect(readdirSync(host.hooksDir).sort()).toEqual(['qemu', 'qemu.before-qemu-hook', 'qemu.d']);
  });

  it('lets libvirt reach the foreign hook through ours, for every event, our refusals included', async () => {
    daemon = await startLibvirtd({ etcDir: host.etcLibvirt });
    writeConfig(
      host,
      `domains:
  e2e-refused:
    devices:
      - name: disk
        match: { vendor: "144d", device: "a808" }
libvirt: { uri: "${daemon.uri}" }
`,
    );
    await defineTiny(daemon, host.work, 'e2e-chain');
    await daemon.virshOk(['start', 'e2e-chain']);
    await daemon.virshOk(['destroy', 'e2e-chain']);
    expect(eventsOf(readHookCalls(foreignLog), 'e2e-chain')).toEqual(CYCLE);

    // A domain qemu-hook manages: the foreign hook runs first, with the XML, then ours refuses.
    await defineTiny(daemon, host.work, 'e2e-refused', [
      { address: '0000:02:00.0', alias: 'ua-qemuhook-disk' },
    ]);
    const r = await daemon.virsh(['start', 'e2e-refused']);
    expect(r.code).not.toBe(0);
    expect(ourLines(r.stderr)).toHaveLength(1);
    expect(ourLines(r.stderr)[0]).toMatch(/^qemu-hook: e2e-refused: disk: refusing to give 0000:02:00\.0 /);
    const calls = readHookCalls(foreignLog).filter((c) => c.domain === 'e2e-refused');
    expect(calls.map((c) => `${c.op} ${c.subop}`)).toEqual(['prepare begin', 'stopped end', 'release end']);
    for (const c of calls) expect(c.firstLine).toMatch(/^<domain type='qemu'/);
    await daemon.stop();
    daemon = undefined;
  }, 240_000);

  it('--uninstall restores it byte for byte, and keeps the config', async () => {
    const program = hookSetting(host.hookFile, 'PROGRAM') ?? '';
    expect(existsSync(program)).toBe(true);
    const out = await installOk(host.root, '--uninstall');
    expect(out).toContain(`restored the previous hook to ${host.hookFile}`);
    expect(readFileSync(host.hookFile)).toEqual(foreign);
    expect(mode(host.hookFile)).toBe(0o755);
    expect(existsSync(saved())).toBe(false);
    expect(existsSync(program)).toBe(false);
    expect(existsSync(join(host.root, 'usr/local/bin/qemu-hook'))).toBe(false);
    expect(existsSync(host.configFile)).toBe(true);
  });
});

describe.skipIf(!canRunLibvirtd())(
  'install.sh --root over a VFIO-Tools dispatcher',
  { timeout: 180_000 },
  () => {
    let host: HostCopy;
    let dispatcher: Buffer;
    let ran: string;
    let daemon: PrivateLibvirtd | undefined;
    const backup = () => join(host.hooksDir, 'qemu.vfio-tools.bak');
    const runs = () =>
      existsSync(ran)
        ? readFileSync(ran, 'utf8')
            .split('\n')
            .filter((l) => l !== '')
        : [];

    beforeAll(() => {
      host = copyFixtureHost('workstation');
      ran = join(host.work, 'per-vm-script.log');
      dispatcher = placeHook(host, VFIO_TOOLS_DISPATCHER);
      // The per-VM scripts the dispatcher was there for.
      for (const ev of ['prepare/begin', 'release/end']) {
        writeVmScript(host, `e2e-vt/${ev}/10-log`, `#!/bin/sh\necho "$*" >> ${shQuote(ran)}\n`);
      }
    });

    afterAll(async () => {
      try {
        await daemon?.stop();
      } finally {
        host?.cleanup();
      }
    }, 120_000);

    it('recognises and replaces it (not chained: it would run every per-VM script twice)', async () => {
      const out = await installOk(host.root);
      expect(out).toContain(`replaced a VFIO-Tools-style dispatcher (kept as ${backup()})`);
      expect(isOurs(host.hookFile)).toBe(true);
      expect(hookSetting(host.hookFile, 'CHAIN')).toBe('');
      expect(readFileSync(backup())).toEqual(dispatcher);

      await installOk(host.root);
      expect(hookSetting(host.hookFile, 'CHAIN')).toBe('');
      expect(readFileSync(backup())).toEqual(dispatcher);
      expect(existsSync(join(host.hooksDir, 'qemu.before-qemu-hook'))).toBe(false);
    });

    it('runs each per-VM script once per event under libvirt', async () => {
      daemon = await startLibvirtd({ etcDir: host.etcLibvirt });
      await defineTiny(daemon, host.work, 'e2e-vt');
      await daemon.virshOk(['start', 'e2e-vt']);
      await daemon.virshOk(['destroy', 'e2e-vt']);
      expect(runs()).toEqual(['e2e-vt prepare begin -', 'e2e-vt release end -']);
    }, 240_000);

    it('--uninstall puts the dispatcher back byte for byte, and it runs the scripts again', async () => {
      const out = await installOk(host.root, '--uninstall');
      expect(out).toContain(`restored the VFIO-Tools dispatcher to ${host.hookFile}`);
      expect(readFileSync(host.hookFile)).toEqual(dispatcher);
      expect(mode(host.hookFile)).toBe(0o755);
      expect(existsSync(backup())).toBe(false);

      // libvirt re-reads the hook on every call: the next start runs the dispatcher, as before qemu-hook.
      const d = daemon;
      if (!d) throw new Error('the private libvirtd did not start');
      await d.virshOk(['start', 'e2e-vt']);
      await d.virshOk(['destroy', 'e2e-vt']);
      expect(runs()).toEqual([
        'e2e-vt prepare begin -',
        'e2e-vt release end -',
        'e2e-vt prepare begin -',
        'e2e-vt release end -',
      ]);
    });
  },
);

// Needs no libvirtd: only the built program (and the binding, which install.sh copies).
const bindingBuilt = existsSync(join(REPO, 'native/build/Release/qemu_hook_libvirt.node'));

describe.skipIf(!bindingBuilt)('install.sh --root: completion, man page, README, logrotate rule', () => {
  const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

  it('installs them where the system looks, made by the installed program, and --uninstall removes them', async () => {
    const host = copyFixtureHost('workstation');
    try {
      const out = await installOk(host.root);
      expect(out).toMatch(/installed bash and zsh completion, qemu-hook\(8\)/);
      const at = (p: string) => join(host.root, p);

      const bash = readFileSync(at('usr/local/share/bash-completion/completions/qemu-hook'), 'utf8');
      expect(bash).toContain('complete -F _qemu_hook qemu-hook');
      expect(spawnSync('bash', ['-n'], { input: bash }).status).toBe(0);
      const installed = join(hookSetting(host.hookFile, 'PROGRAM')!, 'dist/cli/main.cjs');
      expect(bash).toBe(
        spawnSync(process.execPath, [installed, 'completion', 'bash'], { encoding: 'utf8' }).stdout,
      );
      expect(readFileSync(at('usr/local/share/zsh/site-functions/_qemu-hook'), 'utf8')).toMatch(
        /^#compdef qemu-hook\n/,
      );
      const man = at('usr/local/share/man/man8/qemu-hook.8');
      expect(readFileSync(man, 'utf8')).toMatch(/^\.TH QEMU-HOOK 8 /);
      if (has('man')) {
        const page = spawnSync('man', ['-l', man], {
          encoding: 'utf8',
          env: { ...process.env, MANPAGER: 'cat' },
        });
        expect(page.stdout).toMatch(/qemu-hook devices \[--groups\]/);
      }
      for (const f of [
        'usr/local/share/bash-completion/completions/qemu-hook',
        'usr/local/share/man/man8/qemu-hook.8',
      ])
        expect(mode(at(f))).toBe(0o644);

      // The README where the program's messages send people for the config reference.
      const readme = at(INSTALLED_README.slice(1));
      expect(readFileSync(readme, 'utf8')).toBe(readFileSync(join(REPO, 'README.md'), 'utf8'));
      writeFileSync(host.configFile, 'domains:\n  win11:\n    devices: []\n    colour: blue\n');
      const typo = spawnSync(process.execPath, [installed, 'check', '--root', host.root], {
        encoding: 'utf8',
      });
      expect(typo.stdout + typo.stderr).toContain(`see the config reference in ${INSTALLED_README}`);

      // Logs: rotated by rename (each hook run opens the log anew), not copytruncate.
      const rule = readFileSync(at('etc/logrotate.d/qemu-hook'), 'utf8');
      expect(rule).toContain(`${host.root}/var/log/libvirt/qemu-hook*.log {`);
      expect(rule).not.toMatch(/copytruncate/);
      if (has('logrotate')) {
        expect(
          spawnSync('logrotate', ['-d', at('etc/logrotate.d/qemu-hook')], { encoding: 'utf8' }).status,
        ).toBe(0);
      }

      await installOk(host.root, '--uninstall');
      for (const f of [
        'usr/local/share/bash-completion/completions/qemu-hook',
        'usr/local/share/zsh/site-functions/_qemu-hook',
        'usr/local/share/man/man8/qemu-hook.8',
        'etc/logrotate.d/qemu-hook',
        INSTALLED_README.slice(1),
      ])
        expect(existsSync(at(f)), f).toBe(false);
    } finally {
      host.cleanup();
    }
  }, 120_000);
});
