// Attack: install.sh trusted its environment (node from PATH whoever owned it, links in the
// checkout, the umask, existing folders whatever their owner and mode).
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isRoot } from '../../support/attack.js';
import { REPO, tempDirs } from '../../support/cli.js';

const tmp = tempDirs('attack-install');
const mode = (p: string) => statSync(p).mode & 0o7777;

function install(root: string, opts: { env?: NodeJS.ProcessEnv; umask?: string; src?: string } = {}) {
  const script = join(opts.src ?? REPO, 'install.sh');
  const r = spawnSync(
    'sh',
    ['-c', `umask ${opts.umask ?? '022'}; exec sh "$0" --root "$1" --no-build`, script, root],
    {
      encoding: 'utf8',
      env: { ...process.env, ...opts.env },
      timeout: 120_000,
    },
  );
  return { code: r.status, out: r.stdout + r.stderr };
}

const built = existsSync(join(REPO, 'native/build/Release/qemu_hook_libvirt.node'));

describe.skipIf(!isRoot || !built)('install.sh trusts nothing it finds', { timeout: 180_000 }, () => {
  it('refuses a node owned by another user, and says how to choose a root-owned one', () => {
    const root = tmp();
    const bin = join(tmp(), 'bin');
    mkdirSync(bin);
    copyFileSync(process.execPath, join(bin, 'node'));
    chmodSync(join(bin, 'node'), 0o755);
    chownSync(join(bin, 'node'), 4321, 4321);
    const r = install(root, { env: { NODE: join(bin, 'node') } });
    expect(r.code).toBe(1);
    expect(r.out).toMatch(
      /refusing .*node: .* is owned by uid 4321 .*sudo NODE=\/usr\/bin\/node \.\/install\.sh/,
    );
    expect(existsSync(join(root, 'etc/libvirt/hooks/qemu'))).toBe(false);
  });

  it('under umask 000 the folders and files it creates are not writable by others', () => {
    const root = tmp();
    const r = install(root, { umask: '000' });
    expect(r.code, r.out).toBe(0);
    for (const p of [
      'etc/qemu-hook',
      'var/lib/qemu-hook',
      'etc/libvirt/hooks',
      'usr/local/lib/qemu-hook',
      'usr/local/lib/qemu-hook/dist',
    ])
      expect(mode(join(root, p)) & 0o022, p).toBe(0);
    expect(mode(join(root, 'etc/qemu-hook/config.yaml'))).toBe(0o644);
    expect(mode(join(root, 'etc/libvirt/hooks/qemu'))).toBe(0o755);
  });

  it('a link in the checkout is installed as a file, not as a link', () => {
    const src = tmp();
    for (const p of ['install.sh', 'dist', 'hooks', 'package.json', 'examples', 'README.md'])
      cpSync(join(REPO, p), join(src, p), { recursive: true });
    mkdirSync(join(src, 'native/build/Release'), { recursive: true });
    copyFileSync(
      join(REPO, 'native/build/Release/qemu_hook_libvirt.node'),
      join(src, 'native/build/Release/qemu_hook_libvirt.node'),
    );
    const target = join(tmp(), 'elsewhere.txt');
    writeFileSync(target, 'outside the checkout\n');
    symlinkSync(target, join(src, 'dist/linked.txt'));
    const root = tmp();
    const r = install(root, { src });
    expect(r.code, r.out).toBe(0);
    const installed = join(root, 'usr/local/lib/qemu-hook/dist/linked.txt');
    expect(lstatSync(installed).isSymbolicLink()).toBe(false);
  });

  it('an existing group-writable config is fixed; a state folder owned by someone else is refused before anything is written', () => {
    const root = tmp();
    mkdirSync(join(root, 'etc/qemu-hook'), { recursive: true });
    writeFileSync(join(root, 'etc/qemu-hook/config.yaml'), 'domains: {}\n');
    chmodSync(join(root, 'etc/qemu-hook/config.yaml'), 0o666);
    const ok = install(root);
    expect(ok.code, ok.out).toBe(0);
    expect(ok.out).toMatch(/config\.yaml was writable by group or others \(mode 666\): made it 644/);
    expect(mode(join(root, 'etc/qemu-hook/config.yaml'))).toBe(0o644);

    const other = tmp();
    mkdirSync(join(other, 'var/lib/qemu-hook'), { recursive: true });
    chownSync(join(other, 'var/lib/qemu-hook'), 4321, 4321);
    const refused = install(other);
    expect(refused.code).toBe(1);
    expect(refused.out).toContain(`${join(other, 'var/lib/qemu-hook')} is owned by uid 4321, not root`);
    expect(refused.out).toContain(`chown root:root ${join(other, 'var/lib/qemu-hook')}`);
    expect(existsSync(join(other, 'usr/local/lib/qemu-hook'))).toBe(false);
  });
});
