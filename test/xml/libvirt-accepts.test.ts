import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DomainXml } from '../../src/xml/domain-xml.js';
import { rewriteHostdevs } from '../../src/xml/rewrite.js';
import { domainCases, mismatches } from './fixture-cases.js';

// libvirt's own parser is the judge of what we write. The test driver (test:///default) lives
// inside one virsh process: define + dumpxml there touch no daemon, no host device, no file.

const hasVirsh = spawnSync('virsh', ['--version'], { stdio: 'ignore' }).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'qemu-hook-xml-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function defineAndDump(xml: string, name: string): string {
  const file = join(dir, `${name}.xml`);
  writeFileSync(file, xml);
  const r = spawnSync(
    'virsh',
    ['-q', '-c', 'test:///default', `define ${file}; dumpxml --inactive ${name}`],
    {
      encoding: 'utf8',
      timeout: 20_000,
    },
  );
  if (r.status !== 0) throw new Error(`virsh failed: ${r.stderr.trim()}`);
  return r.stdout.slice(r.stdout.indexOf('<domain'));
}

describe.skipIf(!hasVirsh)('libvirt accepts what we write', () => {
  for (const c of domainCases().filter((x) => !x.expectsError)) {
    it(`${c.name}: defines, keeps our aliases, and is stable after libvirt's canonicalization`, () => {
      const ours = rewriteHostdevs(c.input, c.desired, c.options).xml;
      const canonical = defineAndDump(ours, DomainXml.parse(ours).name);
      expect(mismatches(canonical, c.desired)).toEqual([]);
      const again = rewriteHostdevs(canonical, c.desired, c.options);
      expect(again.actions).toEqual([]);
      expect(again.changed).toBe(false);
    });
  }
});
