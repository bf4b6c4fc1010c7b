import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, HOSTS, REPO } from '../support/cli.js';

// Every domain of every fixture host, both events, through the real CLI: the JSON contract and the
// exit status. `npx vitest run test/cli/golden-plans.test.ts --update` regenerates; review the diff.

const hosts = readdirSync(HOSTS);

describe.each(hosts)('--simulate on fixture host %s', (host) => {
  const root = join(HOSTS, host);
  const domains = readdirSync(join(root, 'etc/libvirt/qemu')).map((f) => f.replace(/\.xml$/, ''));
  for (const domain of domains) {
    for (const event of ['prepare', 'release']) {
      it(`${domain} ${event}`, async () => {
        const r = cli(['--simulate', domain, event, '--root', root, '--json']);
        // stderr carries config warnings only (e.g. one device claimed by several domains).
        for (const line of r.stderr.split('\n').filter(Boolean)) expect(line).toMatch(/^warning: /);
        const plan = JSON.parse(r.stdout.replaceAll(REPO, '<repo>'));
        await expect(`${JSON.stringify({ exitCode: r.code, ...plan }, null, 2)}\n`).toMatchFileSnapshot(
          join(REPO, 'fixtures/plans', host, `${domain}.${event}.json`),
        );
        expect(r.code).toBe(plan.ok ? 0 : 1);
      });
    }
  }
});
