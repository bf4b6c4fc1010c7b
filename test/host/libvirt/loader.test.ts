import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LibvirtConnection } from '../../../src/host/libvirt/connection.js';
import { LibvirtDriverControl } from '../../../src/host/libvirt/driver-control.js';
import {
  defaultAddonPath,
  libvirtBindingBuilt,
  loadLibvirtBinding,
} from '../../../src/host/libvirt/loader.js';
import { UsageError } from '../../../src/model/errors.js';
import { PciAddress } from '../../../src/model/pci-address.js';
import { addonBuilt, repoRoot } from './support.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qemu-hook-loader-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('loadLibvirtBinding', () => {
  it('looks for the addon where scripts/build-native.mjs puts it', () => {
    expect(defaultAddonPath()).toBe(join(repoRoot, 'native/build/Release/qemu_hook_libvirt.node'));
  });

  it('says what to install, per distribution, and to re-run npm ci when the addon is absent', () => {
    const missing = join(dir, 'absent/qemu_hook_libvirt.node');
    expect(libvirtBindingBuilt(missing)).toBe(false);
    let err: unknown;
    try {
      loadLibvirtBinding(missing);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    const message = (err as Error).message;
    expect(message).toContain(missing);
    expect(message).toContain('apt-get install libvirt-dev pkg-config g++ make python3');
    expect(message).toContain('dnf install libvirt-devel pkgconf gcc-c++ make python3');
    expect(message).toContain('pacman -S libvirt base-devel');
    expect(message).toContain('npm ci');
    expect(message).toContain('install.sh');
    expect(message).not.toContain('\n');
  });

  it('reports a file that is not a loadable addon as a UsageError naming it', async () => {
    const broken = join(dir, 'broken.node');
    await writeFile(broken, 'not an ELF object');
    expect(() => loadLibvirtBinding(broken)).toThrow(UsageError);
    expect(() => loadLibvirtBinding(broken)).toThrow(broken);
  });

  it('is not reached until something talks to libvirt', async () => {
    const missing = join(dir, 'absent.node');
    let loads = 0;
    const binding = () => {
      loads++;
      return loadLibvirtBinding(missing);
    };
    const control = new LibvirtDriverControl(
      () => LibvirtConnection.open('test:///default', { binding }),
      dir,
    );
    expect(loads).toBe(0);
    await expect(control.detach(PciAddress.parse('0000:01:00.0'))).rejects.toThrow(UsageError);
    expect(loads).toBe(1);
  });

  it.skipIf(!addonBuilt)('loads the built addon once and returns the same module after', () => {
    const first = loadLibvirtBinding();
    expect(typeof first.open).toBe('function');
    expect(loadLibvirtBinding()).toBe(first);
  });
});
