import { describe, expect, it } from 'vitest';
import { XmlError } from '../../src/model/errors.js';
import { rewriteHostdevs } from '../../src/xml/rewrite.js';
import { domainCases, mismatches } from './fixture-cases.js';

// Review the .out.xml/.actions.txt diffs like code; `npx vitest run test/xml/golden.test.ts --update`
// regenerates (the path must come before -u, which takes an optional value).

const cases = domainCases();

describe('golden domain definitions', () => {
  it('has the cases the issue asks for', () => {
    const names = cases.map((c) => c.name);
    for (const wanted of [
      'pci-move',
      'usb-add',
      'sriov-add',
      'adopt-untagged',
      'remove-tagged',
      'idempotent',
      'odd-definition',
      'libvirt-canonical',
      'malformed',
      'not-domain',
    ]) {
      expect(names).toContain(wanted);
    }
  });

  for (const c of cases.filter((x) => !x.expectsError)) {
    it(`${c.name}: rewrites as recorded`, async () => {
      const r = rewriteHostdevs(c.input, c.desired, c.options);
      await expect(r.xml).toMatchFileSnapshot(c.path('.out.xml'));
      await expect(`${r.actions.join('\n')}\n`).toMatchFileSnapshot(c.path('.actions.txt'));
      expect(r.changed).toBe(r.xml !== c.input);
      expect(mismatches(r.xml, c.desired)).toEqual([]);
    });

    it(`${c.name}: a second run changes nothing`, () => {
      const once = rewriteHostdevs(c.input, c.desired, c.options).xml;
      const twice = rewriteHostdevs(once, c.desired, c.options);
      expect(twice.changed).toBe(false);
      expect(twice.actions).toEqual([]);
      expect(twice.xml).toBe(once);
    });
  }

  for (const c of cases.filter((x) => x.expectsError)) {
    it(`${c.name}: fails with one clear line`, async () => {
      let caught: unknown;
      try {
        rewriteHostdevs(c.input, c.desired, c.options);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(XmlError);
      const message = (caught as Error).message;
      expect(message).not.toContain('\n');
      await expect(`${message}\n`).toMatchFileSnapshot(c.path('.error.txt'));
    });
  }
});
