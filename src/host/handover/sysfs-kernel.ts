import { join } from 'node:path';
import type { KernelWriter } from '../../model/ports.js';
import { errnoFromMessage, runChild } from './child.js';

/**
 * The hand-over's kernel writes on a real host, each in a child with a deadline: sysfs writes with
 * dd (one write(2), its strerror text gives the errno back), module removal with rmmod (only that
 * module, unlike modprobe -r, which would also take drm_kms_helper and drm), loading with modprobe.
 */
export class SysfsKernelWriter implements KernelWriter {
  constructor(
    private readonly sys: string,
    private readonly timeoutMs: number,
  ) {}

  bindVtcon(vtcon: string, bind: boolean): Promise<void> {
    return this.write(join(this.sys, 'class/vtconsole', vtcon, 'bind'), bind ? '1' : '0');
  }

  unbindPlatform(device: string, driver: string): Promise<void> {
    return this.write(join(this.sys, 'bus/platform/drivers', driver, 'unbind'), device);
  }

  bindPlatform(device: string, driver: string): Promise<void> {
    return this.write(join(this.sys, 'bus/platform/drivers', driver, 'bind'), device);
  }

  async unloadModule(name: string): Promise<void> {
    await this.run('rmmod', [name], `rmmod ${name}`);
  }

  async loadModule(name: string, parameters: Readonly<Record<string, string>>): Promise<void> {
    const args = [name, ...Object.entries(parameters).map(([k, v]) => `${k}=${v}`)];
    await this.run('modprobe', args, `modprobe ${name}`);
  }

  private async write(path: string, value: string): Promise<void> {
    // No status=none: busybox's dd may lack it. Its statistics lines are ignored; the error line names the errno.
    await this.run('dd', [`of=${path}`, 'conv=notrunc'], `write ${value} to ${path}`, value);
  }

  private async run(command: string, args: string[], what: string, input?: string): Promise<void> {
    const r = await runChild(command, args, {
      timeoutMs: this.timeoutMs,
      ...(input !== undefined ? { input } : {}),
    });
    if (r.code === 0) return;
    const lines = (r.stderr || r.stdout).trim().split('\n');
    const message = lines.find((l) => !/records (in|out)|bytes .* copied/.test(l)) || `exit status ${r.code}`;
    const code = errnoFromMessage(message);
    throw Object.assign(new Error(`${what}: ${message}`), code ? { code } : {});
  }
}
