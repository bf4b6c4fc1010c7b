// Reads are synchronous and writes use `promises` of node:fs, which Node loads on first use: the
// fs/promises module costs every start 4 ms when imported at the top.
import { existsSync, promises as fsp, readFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { HostError } from '../model/errors.js';
import { faultPoint } from '../model/faults.js';
import type { HostPaths } from '../model/paths.js';
import type { DefinitionStore } from '../model/ports.js';

/**
 * Persistent definitions as files: libvirt's own `/etc/libvirt/qemu/<domain>.xml` (read-only
 * fallback when libvirt is unreachable) or a fixture root's. A domain counts as running when
 * libvirt's status file `/run/libvirt/qemu/<domain>.xml` exists, as it does on a real host.
 */
export class FileDefinitionStore implements DefinitionStore {
  constructor(
    private readonly definitionsDir: string,
    private readonly runDir: string,
  ) {}

  /** libvirt's own folders below the host's root. */
  static of(paths: HostPaths): FileDefinitionStore {
    return new FileDefinitionStore(paths.definitionsDir, join(paths.root, 'run/libvirt/qemu'));
  }

  async persistentXml(domain: string): Promise<{ xml: string; source: string } | null> {
    const path = this.pathOf(domain);
    try {
      return { xml: readFileSync(path, 'utf8'), source: path };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw HostError.from('read definition', path, err);
    }
  }

  async isActive(domain: string): Promise<boolean> {
    return existsSync(join(this.runDir, `${domain}.xml`));
  }

  /** Atomic replace beside the target, as libvirt itself does. */
  async define(domain: string, xml: string): Promise<void> {
    const path = this.pathOf(domain);
    const tmp = `${path}.${process.pid}.tmp`;
    try {
      await fsp.mkdir(dirname(path), { recursive: true });
      const fh = await fsp.open(tmp, 'w', 0o600);
      try {
        faultPoint('define-write', () => writeSync(fh.fd, xml.slice(0, xml.length >> 1)));
        await fh.writeFile(xml, 'utf8');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsp.rename(tmp, path);
      faultPoint('define');
    } catch (err) {
      await fsp.unlink(tmp).catch(() => {});
      throw HostError.from('write definition', path, err);
    }
  }

  private pathOf(domain: string): string {
    if (domain.includes('/') || domain.startsWith('.'))
      throw new HostError('read definition', domain, undefined, 'not a valid domain name');
    return join(this.definitionsDir, `${domain}.xml`);
  }
}
