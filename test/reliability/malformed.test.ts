// Malformed input: generated configs, domain XMLs, state files, sysfs oddities, argv and hook
// events, from one printed seed. Every run exits 0, 1 or 2 with a clear first line and no stack
// trace; the commands that only report change nothing (the whole fixture tree hashed before and
// after); a refused start detaches nothing; every prepare + release round trip leaves every
// device on the driver it had.
import { existsSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { copyHost } from '../support/cli.js';
import { figure } from './support/figures.js';
import { breakStructure, breakText, breakYaml, type Json, Random } from './support/generate.js';
import {
  drivers,
  hasStackTrace,
  hook,
  type Run,
  removeHost,
  run,
  statePath,
  treeHash,
} from './support/host.js';

const SEED = Number(process.env['RELIABILITY_SEED']) || 20261202;
const rnd = new Random(SEED);

type Kind = 'config' | 'domain XML' | 'state file' | 'sysfs' | 'argv' | 'hook event';
interface Case {
  readonly kind: Kind;
  readonly label: string;
  /** Breaks the host copy. */
  readonly setup: (root: string) => void;
  /** Runs the commands and checks them. */
  readonly check: (root: string) => Promise<void>;
}

// ---------------------------------------------------------------------------------- checks

/** Exit 0/1/2 (or the subset given), a clear first line when it is not 0, never a stack trace. */
function expectClear(r: Run, what: string, allowed: readonly number[] = [0, 1, 2]): void {
  const out = `${r.stderr}\n${r.stdout}`;
  expect(r.signal, `${what}: killed by ${r.signal}`).toBeNull();
  expect(allowed, `${what}: exit ${r.code}: ${r.stderr.slice(0, 400)}`).toContain(r.code);
  expect(hasStackTrace(out), `${what}: a stack trace: ${out.slice(0, 600)}`).toBe(false);
  if (r.code !== 0) {
    const first = (r.stderr.trim() || r.stdout.trim()).split('\n')[0] ?? '';
    expect(first, `${what}: exit ${r.code} with nothing said`).toMatch(/^\S.{10,}/);
  }
}

/** A command that only reports: the fixture tree is the same after it. */
async function readOnly(root: string, args: string[]): Promise<void> {
  const before = treeHash(root);
  expectClear(await run(root, args), args.join(' '));
  expect(treeHash(root), `${args.join(' ')} changed the host`).toBe(before);
}

/** prepare then release (libvirt calls release after a refused start too): every device as before. */
async function roundTrip(root: string, domain: string, xml: string): Promise<void> {
  const before = drivers(root);
  const p = await hook(root, domain, 'prepare', 'begin', xml);
  expectClear(p, `hook ${domain} prepare`, [0, 1]);
  expect(p.stdout).toBe('');
  if (p.code !== 0) expect(drivers(root), 'a refused start moved devices').toEqual(before);
  const rel = await hook(root, domain, 'release', 'end', xml);
  expectClear(rel, `hook ${domain} release`, [0]);
  expect(drivers(root), 'prepare + release did not give every device back').toEqual(before);
}

const configPath = (root: string) => join(root, 'etc/qemu-hook/config.yaml');
const xmlPath = (root: string, vm = 'win11') => join(root, 'etc/libvirt/qemu', `${vm}.xml`);
const win11 = (root: string) => readFileSync(xmlPath(root), 'utf8');

// ---------------------------------------------------------------------------------- cases

const BASE_CONFIG = readFileSync(
  join(import.meta.dirname, '../../fixtures/hosts/workstation/etc/qemu-hook/config.yaml'),
  'utf8',
  // The detached redefine helper a stale start may leave must never reach a real libvirt.
).replace(/uri: "[^"]*"/, 'uri: "test:///default"');
const BASE_XML = readFileSync(
  join(import.meta.dirname, '../../fixtures/hosts/workstation/etc/libvirt/qemu/win11.xml'),
  'utf8',
);
const safeBase = (root: string) => writeFileSync(configPath(root), BASE_CONFIG);

/** Config paths are placed under the fixture root by joining: one with `..` could leave it. */
const staysInside = (text: string) => !text.includes('..');

function configCases(n: number): Case[] {
  const out: Case[] = [];
  while (out.length < n) {
    const text = breakYaml(rnd, BASE_CONFIG);
    if (!staysInside(text) || text === BASE_CONFIG) continue;
    out.push({
      kind: 'config',
      label: JSON.stringify(text.slice(0, 60)),
      setup: (root) => writeFileSync(configPath(root), text),
      check: async (root) => {
        await readOnly(root, ['check', '--root', root]);
        await readOnly(root, ['--simulate', 'win11', 'prepare', '--root', root]);
        await roundTrip(root, 'win11', win11(root));
      },
    });
  }
  return out;
}

/** Domain XML damage: text cuts and flips, and attribute values swapped for odd ones. */
function breakXml(r: Random, xml: string): string {
  if (r.chance(0.5)) return breakText(r, xml);
  const attrs = [...xml.matchAll(/(\w+)='([^']*)'/g)];
  const a = r.pick(attrs);
  const odd = r.pick([
    '',
    '0x',
    '0xzz',
    '-1',
    '0x100000000',
    '99',
    'yes',
    'no',
    '&amp;',
    '&lt;x',
    'ü',
    'x'.repeat(200),
  ]);
  const replaced = `${a[1]}='${odd}'`;
  let out = xml.slice(0, a.index) + replaced + xml.slice(a.index! + a[0].length);
  if (r.chance(0.3)) out = out.replace('<name>win11</name>', r.pick(['<name>other</name>', '<name/>', '']));
  if (r.chance(0.2))
    out = out.replace(
      '<devices>',
      `<devices>${r.pick(['<hostdev/>', "<hostdev mode='subsystem' type='pci'><source><address bus='0x01'/></source></hostdev>", '<!-- x -->', '<![CDATA[x]]>'])}`,
    );
  return out;
}

function xmlCases(n: number): Case[] {
  const out: Case[] = [];
  while (out.length < n) {
    const xml = breakXml(rnd, BASE_XML);
    if (xml === BASE_XML) continue;
    const stdinOnly = rnd.chance(0.5);
    out.push({
      kind: 'domain XML',
      label: `${stdinOnly ? 'stdin' : 'stdin and definition'} ${JSON.stringify(xml.slice(0, 40))}`,
      setup: (root) => {
        safeBase(root);
        if (!stdinOnly) writeFileSync(xmlPath(root), xml);
      },
      check: async (root) => {
        await readOnly(root, ['--simulate', 'win11', 'prepare', '--root', root]);
        await roundTrip(root, 'win11', xml);
        const m = await hook(root, 'win11', 'migrate', 'begin', xml);
        expectClear(m, 'hook win11 migrate', [0, 1]);
      },
    });
  }
  return out;
}

const BOOT_ID = '3f0c6c5e-2b7a-4d3e-9b8f-6a1d2c4e5f70';
/** A record of another domain (the round trip of win11 must leave it and its device alone). */
function otherRecord(r: Random): Json {
  return {
    domain: r.pick(['router', 'backup', 'gone', 'x'.repeat(80)]),
    address: r.pick(['0000:03:02.0', '0000:04:00.0', '0000:7f:00.0', '0000:00:1f.6']),
    originalDriver: r.pick(['iavf', 'iwlwifi', null, 'e1000e']),
    bootId: r.pick([BOOT_ID, 'an-earlier-boot', null]),
    phase: r.pick(['detaching', 'detached']),
    since: '2026-11-25T10:00:00.000Z',
    entry: 'wan',
  };
}

function stateCases(n: number): Case[] {
  const out: Case[] = [];
  while (out.length < n) {
    const valid: Json = { version: 1, records: Array.from({ length: rnd.int(3) }, () => otherRecord(rnd)) };
    const damaged = rnd.chance(0.6);
    let text = JSON.stringify(valid, null, 2);
    if (damaged) text = rnd.chance(0.5) ? breakText(rnd, text) : JSON.stringify(breakStructure(rnd, valid));
    out.push({
      kind: 'state file',
      label: `${damaged ? 'damaged' : 'odd but valid'} ${JSON.stringify(text.slice(0, 50))}`,
      setup: (root) => {
        safeBase(root);
        writeFileSync(statePath(root), text);
      },
      check: async (root) => {
        await readOnly(root, ['--simulate', 'win11', 'prepare', '--root', root]);
        await readOnly(root, ['check', '--root', root]);
        // status and recover --dry-run must not write either; with a damaged file they still move it
        // aside today (issue 10, item 8): checked here only for the rest.
        if (!damaged) await readOnly(root, ['status', '--root', root]);
        else expectClear(await run(root, ['status', '--root', root]), 'status');
        const dry = await run(root, ['recover', '--dry-run', '--root', root]);
        expectClear(dry, 'recover --dry-run');
        const before = drivers(root);
        const p = await hook(root, 'win11', 'prepare', 'begin', win11(root));
        expectClear(p, 'hook win11 prepare', [0, 1]);
        if (p.code !== 0) expect(drivers(root)).toEqual(before);
        expectClear(await hook(root, 'win11', 'release', 'end', win11(root)), 'hook win11 release', [0]);
        expect(drivers(root)).toEqual(before);
        expectClear(await run(root, ['recover', '--root', root]), 'recover');
      },
    });
  }
  return out;
}

const PCI_ATTRS = [
  'vendor',
  'device',
  'class',
  'subsystem_vendor',
  'subsystem_device',
  'boot_vga',
  'revision',
];
const ODD_CONTENT = [
  '',
  '\n',
  'zz',
  '0x',
  '0xffffffffff',
  '-1',
  'ü',
  '\u0000',
  'x'.repeat(4096),
  '0x10de\n0x10de',
];

/** One sysfs oddity, on a device win11 takes or any other. */
function sysfsOddity(r: Random, root: string, address: string): string {
  const dev = join(root, 'sys/bus/pci/devices', address);
  const kind = r.int(8);
  switch (kind) {
    case 0: {
      const attr = r.pick(PCI_ATTRS);
      const content = r.pick(ODD_CONTENT);
      if (existsSync(join(dev, attr)) || r.chance(0.5)) writeFileSync(join(dev, attr), content);
      return `${address}/${attr} = ${JSON.stringify(content.slice(0, 12))}`;
    }
    case 1: {
      const attr = r.pick(PCI_ATTRS);
      rmSync(join(dev, attr), { force: true });
      return `${address}/${attr} missing`;
    }
    case 2:
      rmSync(join(dev, 'driver'), { force: true });
      symlinkSync('../../../bus/pci/drivers/gone', join(dev, 'driver'));
      return `${address}/driver dangling`;
    case 3:
      rmSync(join(dev, 'iommu_group'), { force: true });
      if (r.chance(0.5)) symlinkSync('../../../kernel/iommu_groups/999', join(dev, 'iommu_group'));
      return `${address}/iommu_group missing or dangling`;
    case 4:
      writeFileSync(
        join(root, 'sys/bus/pci/devices', r.pick(['garbage', '0000:zz:00.0', '0000:01:00.7'])),
        'x',
      );
      return 'a file among the devices';
    case 5:
      rmSync(join(root, 'sys/bus/pci/devices', '0000:09:00.0'), { force: true });
      symlinkSync('../../../devices/pci0000:00/nowhere', join(root, 'sys/bus/pci/devices', '0000:09:00.0'));
      return 'a dangling device link';
    case 6:
      rmSync(join(root, 'proc/sys/kernel/random/boot_id'), { force: true });
      return 'no boot id';
    default: {
      const usb = join(root, 'sys/bus/usb/devices');
      const d = r.pick(readdirSync(usb));
      const attr = r.pick(['idVendor', 'idProduct', 'serial', 'busnum', 'devnum', 'product']);
      writeFileSync(join(usb, d, attr), r.pick(ODD_CONTENT));
      return `usb ${d}/${attr} odd`;
    }
  }
}

const ADDRESSES = [
  '0000:01:00.0',
  '0000:01:00.1',
  '0000:05:00.0',
  '0000:03:02.1',
  '0000:00:02.0',
  '0000:02:00.0',
  '0000:03:00.0',
];

function sysfsCases(n: number): Case[] {
  const out: Case[] = [];
  for (let i = 0; i < n; i++) {
    const seed = rnd.int(2 ** 31);
    const address = rnd.pick(ADDRESSES);
    let label = '';
    out.push({
      kind: 'sysfs',
      get label() {
        return label || `oddity ${seed} on ${address}`;
      },
      setup: (root) => {
        safeBase(root);
        const r = new Random(seed);
        label = Array.from({ length: 1 + r.int(2) }, () =>
          sysfsOddity(r, root, r.chance(0.7) ? address : r.pick(ADDRESSES)),
        ).join('; ');
      },
      check: async (root) => {
        await readOnly(root, ['devices', '--root', root]);
        await readOnly(root, ['--simulate', 'win11', 'prepare', '--root', root]);
        await roundTrip(root, 'win11', win11(root));
      },
    });
  }
  return out;
}

const WORDS = [
  'devices',
  'check',
  'status',
  'recover',
  'apply',
  '--simulate',
  'help',
  'version',
  'bogus',
  '--json',
  '--dry-run',
  '--yes',
  '--vm',
  '--domain',
  '--config',
  '--root',
  'win11',
  'router',
  'prepare',
  'release',
  'stopped',
  '-',
  '-x',
  '--no-such-flag',
  '',
  ' ',
  'ü',
  'x'.repeat(300),
  '--json=yes',
  '-h',
  '--help',
  '--version',
  '--vm=',
  '--domain=win11',
  'etc/qemu-hook/config.yaml',
];
/** Commands that change the host unless --dry-run: the tree is only hashed for the others. */
const WRITERS = new Set(['recover', 'apply']);

function argvCases(n: number): Case[] {
  const out: Case[] = [];
  while (out.length < n) {
    const words = Array.from({ length: 1 + rnd.int(5) }, () => rnd.pick(WORDS));
    const writes = words.some((w) => WRITERS.has(w)) && !words.includes('--dry-run');
    out.push({
      kind: 'argv',
      label: JSON.stringify(words.join(' ').slice(0, 70)),
      setup: safeBase,
      check: async (root) => {
        // --root first and last, and no `--` among the words: whatever they say, only the copy is
        // read or changed (a command without a root would work on this machine).
        const args = words.map((w) => (w === 'etc/qemu-hook/config.yaml' ? configPath(root) : w));
        const fixed = ['--root', root, ...args, '--root', root];
        if (writes) expectClear(await run(root, fixed), fixed.join(' '));
        else await readOnly(root, fixed);
      },
    });
  }
  return out;
}

const OPS = [
  'prepare',
  'start',
  'started',
  'stopped',
  'release',
  'migrate',
  'restore',
  'reconnect',
  'attach',
  'PREPARE',
  'bogus',
  'x'.repeat(100),
  '../x',
];
const STRICT = new Set(['prepare', 'start', 'started', 'migrate', 'restore']);
const DOMAINS = [
  'win11',
  'router',
  'backup',
  'unknown',
  '../etc',
  'a b',
  'ü',
  'x'.repeat(300),
  '-rf',
  '--root',
  '.',
];

function eventCases(n: number): Case[] {
  const out: Case[] = [];
  while (out.length < n) {
    const domain = rnd.pick(DOMAINS);
    const op = rnd.pick(OPS);
    const subop = rnd.pick(['begin', 'end', '-', 'x', '']);
    const extra = rnd.pick(['-', 'shutdown', 'destroyed', '', 'x'.repeat(100)]);
    const stdin = rnd.pick(['win11', 'empty', 'garbage', 'other'] as const);
    out.push({
      kind: 'hook event',
      label: JSON.stringify(
        `${domain.slice(0, 20)} ${op.slice(0, 12)} ${subop} ${extra.slice(0, 10)} <${stdin}`,
      ),
      setup: safeBase,
      check: async (root) => {
        const xml = {
          win11: win11(root),
          empty: '',
          garbage: '<domain><name>',
          other: BASE_XML.replace(/win11/g, domain),
        }[stdin];
        const before = drivers(root);
        const r = await run(root, ['hook', domain, op, subop, extra], { input: xml });
        expectClear(r, `hook ${op}`, STRICT.has(op) ? [0, 1] : [0]);
        if (!['migrate', 'restore'].includes(op)) expect(r.stdout).toBe('');
        if (op === 'prepare' && r.code !== 0) expect(drivers(root)).toEqual(before);
        // libvirt's stop of whatever was started.
        expectClear(
          await run(root, ['hook', domain, 'release', 'end', '-'], { input: xml }),
          'hook release',
          [0],
        );
        expect(drivers(root)).toEqual(before);
      },
    });
  }
  return out;
}

const CASES: Case[] = [
  ...configCases(80),
  ...xmlCases(60),
  ...stateCases(50),
  ...sysfsCases(50),
  ...argvCases(40),
  ...eventCases(40),
];
const passed = new Map<Kind, number>();

describe(`malformed input (seed ${SEED})`, () => {
  CASES.forEach((c, i) => {
    it.concurrent(`${c.kind} ${i}`, async () => {
      const root = copyHost('workstation');
      try {
        c.setup(root);
        await c.check(root);
      } catch (err) {
        throw new Error(`${c.kind} case ${i} (${c.label}), seed ${SEED}: ${(err as Error).message}`);
      } finally {
        await removeHost(root);
      }
      passed.set(c.kind, (passed.get(c.kind) ?? 0) + 1);
    });
  });
});

describe('malformed input', () => {
  it('figures', (ctx) => {
    const kinds = [...new Set(CASES.map((c) => c.kind))];
    const byKind = kinds.map((k) => `${k} ${passed.get(k) ?? 0}/${CASES.filter((c) => c.kind === k).length}`);
    const total = [...passed.values()].reduce((a, b) => a + b, 0);
    figure(
      ctx,
      `malformed input: ${total}/${CASES.length} cases passed (seed ${SEED}): ${byKind.join(', ')}`,
    );
    expect(CASES.length).toBeGreaterThanOrEqual(300);
  });
});
