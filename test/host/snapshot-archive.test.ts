// Unpacking a snapshot given to --root: hostile archives are refused before anything lands outside
// the private folder, with one line saying why.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ARCHIVE_LIMITS,
  packFolder,
  UnsafeArchiveError,
  unpackArchive,
} from '../../src/host/snapshot/archive.js';
import { cli } from '../support/cli.js';

const work = mkdtempSync(join(tmpdir(), 'qh-archive-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Member {
  path: string;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'FIFO';
  body?: string;
  /** What the header claims (defaults to the body's length). */
  size?: number;
  linkpath?: string;
}

/** A .tar.gz written member by member, as an attacker would: no sanitising on the way. */
function rawTarGz(members: readonly Member[], name: string): string {
  const blocks: Buffer[] = [];
  for (const m of members) {
    const body = Buffer.from(m.body ?? '');
    const h = new Header({
      path: m.path,
      type: m.type ?? 'File',
      mode: 0o644,
      size: m.size ?? (m.type && m.type !== 'File' ? 0 : body.length),
      linkpath: m.linkpath,
      mtime: new Date(0),
    });
    const header = Buffer.alloc(512);
    h.encode(header);
    blocks.push(header);
    if (body.length > 0) blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  const file = join(work, `${name}.tar.gz`);
  writeFileSync(file, gzipSync(Buffer.concat(blocks)));
  return file;
}

async function unpack(file: string, limits = ARCHIVE_LIMITS): Promise<{ dir: string; error: string | null }> {
  const dir = mkdtempSync(join(work, 'out-'));
  try {
    await unpackArchive(file, dir, limits);
    return { dir, error: null };
  } catch (err) {
    expect(err).toBeInstanceOf(UnsafeArchiveError);
    return { dir, error: (err as Error).message };
  }
}

describe('unpackArchive', () => {
  it('unpacks what packFolder packed: files, folders, and links inside the tree', async () => {
    const src = join(work, 'src');
    mkdirSync(join(src, 'sys/devices/pci0000:00/0000:00:02.0'), { recursive: true });
    mkdirSync(join(src, 'sys/bus/pci/devices'), { recursive: true });
    writeFileSync(join(src, 'sys/devices/pci0000:00/0000:00:02.0/vendor'), '0x8086\n');
    const { symlinkSync } = await import('node:fs');
    symlinkSync('../../../devices/pci0000:00/0000:00:02.0', join(src, 'sys/bus/pci/devices/0000:00:02.0'));
    const file = join(work, 'good.tar.gz');
    await packFolder(src, file);
    const { dir, error } = await unpack(file);
    expect(error).toBeNull();
    expect(readFileSync(join(dir, 'sys/bus/pci/devices/0000:00:02.0/vendor'), 'utf8')).toBe('0x8086\n');
    expect(readlinkSync(join(dir, 'sys/bus/pci/devices/0000:00:02.0'))).toBe(
      '../../../devices/pci0000:00/0000:00:02.0',
    );
  });

  const hostile: [string, Member[], RegExp][] = [
    [
      'an absolute path',
      [{ path: '/etc/qemu-hook-pwned', body: 'x' }],
      /^member \/etc\/qemu-hook-pwned has an absolute path$/,
    ],
    ['a ".." in a path', [{ path: 'sys/../../qemu-hook-pwned', body: 'x' }], /has "\.\." in its path$/],
    [
      'a symlink out of the tree',
      [{ path: 'sys/escape', type: 'SymbolicLink', linkpath: '../../../etc' }],
      /^member sys\/escape is a link to \.\.\/\.\.\/\.\.\/etc, outside the archive$/,
    ],
    [
      'an absolute symlink',
      [{ path: 'etc', type: 'SymbolicLink', linkpath: '/etc' }],
      /is a link to \/etc, outside/,
    ],
    [
      'a member written through a link of the archive',
      [
        { path: 'a', type: 'Directory' },
        { path: 'a/b', type: 'Directory' },
        { path: 'a/b/up', type: 'SymbolicLink', linkpath: '../..' },
        { path: 'a/b/up/c', type: 'SymbolicLink', linkpath: '../..' },
      ],
      /^member a\/b\/up\/c lies beneath the link a\/b\/up$/,
    ],
    [
      'a character device',
      [{ path: 'dev/mem', type: 'CharacterDevice' }],
      /is a CharacterDevice, not a file/,
    ],
    ['a fifo', [{ path: 'fifo', type: 'FIFO' }], /is a FIFO, not a file/],
    ['a hard link', [{ path: 'h', type: 'Link', linkpath: 'etc/shadow' }], /is a Link, not a file/],
    [
      'a member seen twice',
      [
        { path: 'x', body: '1' },
        { path: 'x', body: '2' },
      ],
      /^member x appears twice$/,
    ],
    // The header alone claims 1 GiB: refused before a byte of it is read.
    ['a 1 GiB member', [{ path: 'big', size: 1024 ** 3 }], /^member big is 1024 MiB, more than 16 MiB$/],
  ];
  it.each(hostile)('refuses %s, writing nothing outside its folder', async (name, members, message) => {
    const file = rawTarGz(members, name.replace(/\W+/g, '-'));
    const { error } = await unpack(file);
    expect(error).toMatch(message);
    expect(existsSync(join(work, 'qemu-hook-pwned'))).toBe(false);
    expect(existsSync('/etc/qemu-hook-pwned')).toBe(false);
  });

  it('stops a tar bomb at the member count, and at the size limit, not at the end of the stream', async () => {
    const many = rawTarGz(
      Array.from({ length: 50 }, (_, i) => ({ path: `f${i}`, body: 'x' })),
      'many',
    );
    const count = await unpack(many, { ...ARCHIVE_LIMITS, members: 20 });
    expect(count.error).toBe('more than 20 members (a tar bomb?)');
    expect(readdirSync(count.dir).length).toBeLessThanOrEqual(20);

    const heavy = rawTarGz(
      Array.from({ length: 8 }, (_, i) => ({ path: `f${i}`, body: 'x'.repeat(4096) })),
      'heavy',
    );
    const total = await unpack(heavy, { ...ARCHIVE_LIMITS, totalBytes: 10_000 });
    expect(total.error).toMatch(/^(its members add up to|it unpacks to) more than/);
  });

  it("keeps a process's fd link to a /dev node (read as a name, never followed), and nothing else absolute", async () => {
    const ok = rawTarGz([{ path: 'proc/1234/fd/7', type: 'SymbolicLink', linkpath: '/dev/dri/card0' }], 'fd');
    const { dir, error } = await unpack(ok);
    expect(error).toBeNull();
    expect(readlinkSync(join(dir, 'proc/1234/fd/7'))).toBe('/dev/dri/card0');
    const bad = rawTarGz(
      [{ path: 'proc/1234/fd/7', type: 'SymbolicLink', linkpath: '/etc/shadow' }],
      'fd-bad',
    );
    expect((await unpack(bad)).error).toBe(
      'member proc/1234/fd/7 is a link to /etc/shadow, outside the archive',
    );
  });

  it('refuses a file that is not a .tar.gz', async () => {
    const file = join(work, 'not.tar.gz');
    writeFileSync(file, 'hello');
    expect((await unpack(file)).error).toMatch(/^not a readable \.tar\.gz/);
  });
});

describe('--root FILE with a hostile archive', () => {
  it('refuses with one line and exit 2, leaving no unpacked folder behind', () => {
    const tmp = mkdtempSync(join(work, 'tmp-'));
    const file = rawTarGz([{ path: 'sys/escape', type: 'SymbolicLink', linkpath: '/sys' }], 'cli');
    const r = cli(['devices', '--root', file], { env: { TMPDIR: tmp } });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `qemu-hook: --root ${file}: refused: member sys/escape is a link to /sys, outside the archive\n`,
    );
    expect(readdirSync(tmp)).toEqual([]);
  });
});
