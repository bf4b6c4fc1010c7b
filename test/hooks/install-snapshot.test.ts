// install.sh makes the hook's startup snapshot again when the build's does not fit the node it
// installs for (another binary, another CPU). Where the checkout has the fixture hosts, that
// snapshot is warmed up like the build's: a start and a stop on copies of two of them, never on
// the host, and the copies go away.
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  readdirSync,
  readFileSync,
  realpathSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isRoot } from '../support/attack.js';
import { REPO, tempDirs } from '../support/cli.js';

const tmp = tempDirs('install-snapshot');

/** A checkout with the build's output, its snapshot marked as made by another node. */
function checkout(withFixtures: boolean): string {
  const src = join(tmp(), 'checkout');
  for (const f of ['dist', 'hooks', 'native', 'scripts', 'examples', 'install.sh', 'package.json'])
    cpSync(join(REPO, f), join(src, f), { recursive: true, verbatimSymlinks: true });
  if (withFixtures)
    for (const h of ['workstation', 'single-amd'])
      cpSync(join(REPO, 'fixtures/hosts', h), join(src, 'fixtures/hosts', h), {
        recursive: true,
        verbatimSymlinks: true,
      });
  writeFileSync(join(src, 'dist/qemu-hook.blob.node'), '0 0\nflags\t: none\n');
  return src;
}

function install(src: string, root: string, scratch: string) {
  const r = spawnSync('sh', [join(src, 'install.sh'), '--root', root, '--no-build'], {
    encoding: 'utf8',
    env: { ...process.env, TMPDIR: scratch },
    timeout: 120_000,
  });
  return { code: r.status, out: r.stdout + r.stderr };
}

/** What hooks/qemu compares before it starts Node from the snapshot. */
function thisNodeAndCpu(): string {
  const node = statSync(realpathSync(process.execPath));
  const flags = readFileSync('/proc/cpuinfo', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('flags'));
  return `${node.size} ${Math.floor(node.mtimeMs / 1000)}\n${flags}\n`;
}

const built =
  existsSync(join(REPO, 'native/build/Release/qemu_hook_libvirt.node')) &&
  existsSync(join(REPO, 'dist/qemu-hook-snapshot.cjs'));

describe.skipIf(!isRoot || !built)(
  'install.sh makes a startup snapshot that fits',
  { timeout: 180_000 },
  () => {
    it('warmed up on copies of the fixture hosts when the checkout has them, and the copies go', () => {
      const root = tmp();
      const scratch = tmp();
      const r = install(checkout(true), root, scratch);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toMatch(
        /made the hook's startup snapshot for \S+ on this CPU \(warmed up on copies of fixtures\/hosts\)/,
      );
      const dist = join(root, 'usr/local/lib/qemu-hook/dist');
      expect(readFileSync(join(dist, 'qemu-hook.blob.node'), 'utf8')).toBe(thisNodeAndCpu());
      expect(readdirSync(scratch)).toEqual([]);
      // Nothing of the install root was used as a warm-up host: no state, no fixture bookkeeping.
      expect(existsSync(join(root, 'var/lib/qemu-hook/state.json'))).toBe(false);
      expect(existsSync(join(root, 'var/lib/qemu-hook-fixture'))).toBe(false);

      // The snapshot starts the program, and it reads a fixture host as the code-cached entry does.
      const fixture = join(REPO, 'fixtures/hosts/workstation');
      const fromSnapshot = spawnSync(
        process.execPath,
        ['--snapshot-blob', join(dist, 'qemu-hook.blob'), 'devices', '--root', fixture, '--json'],
        { encoding: 'utf8' },
      );
      const fromCodeCache = spawnSync(
        process.execPath,
        [join(dist, 'cli/main.cjs'), 'devices', '--root', fixture, '--json'],
        {
          encoding: 'utf8',
        },
      );
      expect(fromSnapshot.status, fromSnapshot.stderr).toBe(0);
      expect(fromSnapshot.stdout).toBe(fromCodeCache.stdout);
      expect(JSON.parse(fromSnapshot.stdout)).toBeTruthy();
    });

    it('without the fixture hosts (an installed package), made all the same, without the warm-up', () => {
      const root = tmp();
      const r = install(checkout(false), root, tmp());
      expect(r.code, r.out).toBe(0);
      expect(r.out).toMatch(/made the hook's startup snapshot for \S+ on this CPU\n/);
      expect(readFileSync(join(root, 'usr/local/lib/qemu-hook/dist/qemu-hook.blob.node'), 'utf8')).toBe(
        thisNodeAndCpu(),
      );
    });
  },
);
