// Tiny domains with fixture <hostdev>s, and the small waits and timings the e2e tests share.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DOMParser } from '@xmldom/xmldom';
import { type PrivateLibvirtd, pciHostdevXml, tinyDomainXml } from '../harness/index.js';
import { assertNotOnThisMachine } from './real-sysfs.js';

export { waitFor } from '../../support/wait.js';

export interface FixtureHostdev {
  /** DDDD:BB:SS.F of a fixture device: never one this machine has (checked). */
  readonly address: string;
  readonly alias: string;
}

/** Defines a tiny TCG domain whose managed='no' PCI hostdevs point at fixture devices. */
export async function defineTiny(
  daemon: PrivateLibvirtd,
  dir: string,
  name: string,
  hostdevs: readonly FixtureHostdev[] = [],
): Promise<void> {
  assertNotOnThisMachine(hostdevs.map((h) => h.address));
  const xml = tinyDomainXml(name, {
    hostdevs: hostdevs.map((h) => pciHostdevXml(h.address, { alias: h.alias })).join('\n    '),
  });
  const file = join(dir, `${name}.xml`);
  writeFileSync(file, xml);
  await daemon.virshOk(['define', file]);
}

/** alias → host address ("0000:02:00.0") of every PCI <hostdev> in a domain XML. */
export function hostdevAddresses(xml: string): Record<string, string> {
  const doc = new DOMParser().parseFromString(xml, 'text/xml');
  const out: Record<string, string> = {};
  const hostdevs = doc.getElementsByTagName('hostdev');
  for (let i = 0; i < hostdevs.length; i++) {
    const h = hostdevs.item(i);
    const alias = h?.getElementsByTagName('alias').item(0)?.getAttribute('name');
    const a = h?.getElementsByTagName('source').item(0)?.getElementsByTagName('address').item(0);
    if (!alias || !a) continue;
    const hex = (attr: string, width: number) =>
      Number.parseInt(a.getAttribute(attr) ?? '', 16)
        .toString(16)
        .padStart(width, '0');
    out[alias] = `${hex('domain', 4)}:${hex('bus', 2)}:${hex('slot', 2)}.${hex('function', 1)}`;
  }
  return out;
}

/** Runs `f` and prints how long it took (printed, never asserted: timings are not test results). */
export async function timed<T>(what: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const result = await f();
  console.log(`[e2e timing] ${what}: ${Math.round(performance.now() - t0)} ms`);
  return result;
}

/** The `Calling hook … id=<domain> op=<op> subop=<subop>` lines libvirtd logged, as "op subop". */
export function hookCallsLogged(daemon: PrivateLibvirtd, domain: string): string[] {
  const re = /Calling hook \/etc\/libvirt\/hooks\/qemu id=(\S+) op=(\S+) subop=(\S+)/g;
  return [...daemon.daemonLog().matchAll(re)].filter((m) => m[1] === domain).map((m) => `${m[2]} ${m[3]}`);
}

/** PID of the QEMU process of a running domain, from the daemon's private /run/libvirt/qemu. */
export function qemuPid(daemon: PrivateLibvirtd, domain: string): number {
  return Number.parseInt(readFileSync(join(daemon.stateDir, 'run', 'qemu', `${domain}.pid`), 'utf8'), 10);
}

/** The lines of a virsh stderr that our hook wrote (libvirt prefixes the first with its own text). */
export function ourLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .map((l) => l.replace(/^.*unexpected exit status \d+: /, ''))
    .filter((l) => l.startsWith('qemu-hook: '));
}

/**
 * The "End of file while reading data" errors in the daemon's log so far: libvirtd logs one for each
 * client that leaves without closing its connection. Give a client that just exited
 * `clientGone()` first: the daemon notices the closed socket on its own time.
 */
export function uncleanCloses(daemon: PrivateLibvirtd): number {
  return daemon.daemonLog().match(/End of file while reading data/g)?.length ?? 0;
}

export const clientGone = (): Promise<void> => new Promise((r) => setTimeout(r, 300));
