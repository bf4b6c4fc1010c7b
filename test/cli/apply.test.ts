import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, hostCopies, MAIN } from '../support/cli.js';

const copy = hostCopies();
const def = (root: string, vm: string) => readFileSync(join(root, 'etc/libvirt/qemu', `${vm}.xml`), 'utf8');

describe('qemu-hook apply --root', () => {
  it('--dry-run shows the diff and exits 1 when something would change, touching nothing', () => {
    const root = copy('workstation-moved');
    const before = def(root, 'win11');
    const r = cli(['apply', '--root', root, '--vm', 'win11', '--dry-run']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("-        <address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>");
    expect(r.stdout).toContain("+        <address domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>");
    expect(r.stdout).not.toContain('\u001b['); // no colour without a terminal
    expect(def(root, 'win11')).toBe(before);
  });

  it('--yes rewrites only our entries; the next start passes and apply again changes nothing', () => {
    const root = copy('workstation-moved');
    const before = def(root, 'win11');
    const r = cli(['apply', '--root', root, '--vm', 'win11', '--yes']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/win11: definition updated/);
    const after = def(root, 'win11');
    // Only source addresses changed: same number of lines, every other line identical.
    const a = before.split('\n');
    const b = after.split('\n');
    expect(b).toHaveLength(a.length);
    const changed = a.filter((line, i) => line !== b[i]);
    expect(
      changed.every((l) =>
        /<address (type='pci' )?domain='0x0000' bus='0x0\d' slot='0x0\d' function='0x\d'\/>/.test(l),
      ),
    ).toBe(true);
    expect(cli(['--simulate', 'win11', 'prepare', '--root', root]).code).toBe(0);
    const again = cli(['apply', '--root', root, '--vm', 'win11', '--dry-run']);
    expect(again).toMatchObject({ code: 0 });
    expect(again.stdout).toMatch(/already in step/);
  });

  it('without --yes and without a terminal it refuses instead of hanging', () => {
    const root = copy('workstation-moved');
    const r = cli(['apply', '--root', root]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no terminal to ask on: pass --yes/);
  });

  describe('at a terminal (util-linux script gives it one)', () => {
    // The answer is typed ahead: the terminal holds it until the prompt reads it.
    const atTerminal = (root: string, answer: string) => {
      const command = [process.execPath, MAIN, 'apply', '--root', root, '--vm', 'win11']
        .map(shellQuote)
        .join(' ');
      const r = spawnSync('script', ['-qec', command, '/dev/null'], {
        input: `${answer}\n`,
        encoding: 'utf8',
        timeout: 30_000,
      });
      return { code: r.status, out: r.stdout.replace(/\r/g, '') };
    };

    it('asks, and "y" writes the new definition, the diff in colour', () => {
      const root = copy('workstation-moved');
      const before = def(root, 'win11');
      const r = atTerminal(root, 'y');
      expect(r.out).toContain('Apply to win11? [y/N]');
      expect(r.out).toContain('\u001b[32m+'); // additions in green
      expect(r.out).toMatch(/win11: definition updated/);
      expect(r.code).toBe(0);
      expect(def(root, 'win11')).not.toBe(before);
      expect(cli(['apply', '--root', root, '--vm', 'win11', '--dry-run']).stdout).toMatch(/already in step/);
    });

    it('Ctrl-D (end of input) at the prompt is no, not an error', () => {
      const root = copy('workstation-moved');
      const before = def(root, 'win11');
      // No input at all: util-linux script passes the end of its stdin on to the terminal.
      const command = [process.execPath, MAIN, 'apply', '--root', root, '--vm', 'win11']
        .map(shellQuote)
        .join(' ');
      const r = spawnSync('script', ['-qec', command, '/dev/null'], {
        input: '',
        encoding: 'utf8',
        timeout: 30_000,
      });
      const out = r.stdout.replace(/\r/g, '');
      expect(out).toContain('Apply to win11? [y/N]');
      expect(out).toMatch(/win11: left as it was/);
      expect(out).not.toMatch(/unexpected error/);
      expect(r.status).toBe(0);
      expect(def(root, 'win11')).toBe(before);
    });

    it('anything but yes leaves the definition as it was', () => {
      const root = copy('workstation-moved');
      const before = def(root, 'win11');
      const r = atTerminal(root, 'n');
      expect(r.out).toContain('Apply to win11? [y/N]');
      expect(r.out).toMatch(/win11: left as it was/);
      expect(def(root, 'win11')).toBe(before);
    });
  });

  it('never redefines a running domain', () => {
    const root = copy('workstation-moved');
    mkdirSync(join(root, 'run/libvirt/qemu'), { recursive: true });
    writeFileSync(join(root, 'run/libvirt/qemu/win11.xml'), '<domstatus/>');
    const before = def(root, 'win11');
    const r = cli(['apply', '--root', root, '--vm', 'win11', '--yes']);
    expect(r.stdout).toMatch(/win11: running: not redefined/);
    expect(def(root, 'win11')).toBe(before);
  });

  it('adds the entries a definition never had, and the start then passes', () => {
    const root = copy('workstation');
    const path = join(root, 'etc/libvirt/qemu/win11.xml');
    const stripped = readFileSync(path, 'utf8').replace(
      /\s*<hostdev mode='subsystem' type='pci'[\s\S]*?<\/hostdev>/g,
      '',
    );
    writeFileSync(path, stripped);
    expect(cli(['--simulate', 'win11', 'prepare', '--root', root]).code).toBe(1);
    expect(cli(['apply', '--root', root, '--vm', 'win11', '--yes']).code).toBe(0);
    expect(def(root, 'win11')).toContain("<alias name='ua-qemuhook-gpu-1'/>");
    expect(cli(['--simulate', 'win11', 'prepare', '--root', root]).code).toBe(0);
  });

  it('refuses to write a definition that would still be refused (ambiguous twins)', () => {
    const root = copy('twin-gpus');
    const before = def(root, 'ml');
    const r = cli(['apply', '--root', root, '--vm', 'ml', '--yes']);
    expect(r.code).not.toBe(0);
    expect(def(root, 'ml')).toBe(before);
  });

  it('names unknown domains and exits 2', () => {
    const r = cli(['apply', '--root', copy('workstation'), '--vm', 'nope', '--dry-run']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/not in the config: nope/);
  });

  it('a USB entry for a definition without USB or a free port is refused before anything is written', () => {
    const root = copy('pitfalls');
    for (const vm of ['usb-off', 'usb-full']) {
      const before = def(root, vm);
      const r = cli(['apply', '--root', root, '--vm', vm, '--yes']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/not applied: the new definition would still be refused/);
      expect(r.stderr).toMatch(/qemu-xhci/);
      expect(def(root, vm)).toBe(before);
    }
  });

  it("adoption: managed='yes' becomes 'no' (said under the diff); --yes keeps the user's own alias", () => {
    const root = copy('pitfalls');
    const r = cli(['apply', '--root', root, '--vm', 'untagged', '--yes']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /adopted gpu: pci 0000:01:00\.0 \(keeps your alias 'ua-myGPU'\); managed='yes' → 'no'/,
    );
    const after = def(root, 'untagged');
    expect(after).toContain("<alias name='ua-myGPU'/>");
    expect(after).toContain("<alias name='ua-qemuhook-gpu-1'/>");
    expect(after).not.toMatch(/type='pci' managed='yes'/);
    expect(cli(['apply', '--root', root, '--vm', 'untagged', '--dry-run']).code).toBe(0);
  });

  it('functions: all plus an audio entry: apply writes one <hostdev> per address', () => {
    const root = copy('pitfalls');
    const xml = def(root, 'doubled').replace(
      "<alias name='ua-qemuhook-gpu-1'/>",
      "<alias name='ua-qemuhook-audio'/>",
    );
    writeFileSync(join(root, 'etc/libvirt/qemu/doubled.xml'), xml);
    expect(cli(['apply', '--root', root, '--vm', 'doubled', '--yes']).code).toBe(0);
    const after = def(root, 'doubled');
    expect(after.match(/function='0x1'\/>\n\s*<\/source>/g)).toHaveLength(1);
    expect(after).toContain("<alias name='ua-qemuhook-gpu-1'/>");
  });
});

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, "'\\''")}'`;
}
