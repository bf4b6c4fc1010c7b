import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { REPO } from '../support/cli.js';

// hooks/qemu, the POSIX-sh front libvirt runs: which events reach Node, and what libvirt sees.
// "Node" here is a stand-in script that records its argv (after what names the program: the
// code-cached entry, or `--snapshot-blob <blob>`, which goes to a file of its own) and exits with a
// chosen status.

let root: string;
let calls: string;
const hook = () => join(root, 'hook');

const fakeNode = () => join(root, 'fake-node');
const program = () => join(root, 'program');
const started = () => join(root, 'started');
const rejecting = () => join(root, 'reject-snapshot');

function install(nodeExit = 0, chain = '') {
  writeFileSync(
    fakeNode(),
    // A rejected snapshot: Node exits 14 before reading anything.
    `#!/bin/sh
if [ "$1" = --snapshot-blob ]; then
  [ -e ${rejecting()} ] && { echo "snapshot rejected" >> ${started()}; exit 14; }
  echo "snapshot $2" >> ${started()}; shift 2
else echo "entry $1 \${QEMU_HOOK_SNAPSHOT_REJECTED:-}" >> ${started()}; shift; fi
echo "$*" >> ${calls}
echo "stdin $(cat)" >> ${started()}
exit ${nodeExit}
`,
  );
  chmodSync(fakeNode(), 0o755);
  const text = readFileSync(join(REPO, 'hooks/qemu'), 'utf8')
    .replace(/^NODE=.*# qemu-hook:node$/m, `NODE='${fakeNode()}' # qemu-hook:node`)
    .replace(/^PROGRAM=.*# qemu-hook:program$/m, `PROGRAM='${program()}' # qemu-hook:program`)
    .replace(/^ROOT=.*# qemu-hook:root$/m, `ROOT='${root}' # qemu-hook:root`)
    .replace(/^CHAIN=.*# qemu-hook:chain.*$/m, `CHAIN='${chain}' # qemu-hook:chain`);
  writeFileSync(hook(), text);
  chmodSync(hook(), 0o755);
}
const run = (...args: string[]) => spawnSync(hook(), args, { input: '<domain/>', encoding: 'utf8' });
const seen = () => {
  try {
    return readFileSync(calls, 'utf8').trim().split('\n').filter(Boolean);
  } catch {
    return [];
  }
};

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'qh-front-'));
  calls = join(root, 'calls');
  mkdirSync(join(root, 'etc/qemu-hook'), { recursive: true });
  writeFileSync(join(root, 'etc/qemu-hook/config.yaml'), 'domains:\n  win11: { devices: [] }\n');
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('hooks/qemu', () => {
  it('never starts Node for a VM it does not manage', () => {
    install();
    for (const op of ['prepare', 'start', 'started', 'stopped', 'release', 'reconnect', 'migrate']) {
      expect(run('other', op, 'begin', '-').status).toBe(0);
    }
    expect(seen()).toEqual([]);
  });

  it('hands a configured VM’s built-in events to Node, with the root baked in', () => {
    install();
    run('win11', 'prepare', 'begin', '-');
    run('win11', 'started', 'begin', '-');
    run('win11', 'release', 'end', '-');
    expect(seen()).toEqual(['hook win11 prepare begin -', 'hook win11 release end -']);
  });

  it('runs Node for any event that has per-VM scripts', () => {
    install();
    mkdirSync(join(root, 'etc/libvirt/hooks/qemu.d/other/started/begin'), { recursive: true });
    run('other', 'started', 'begin', '-');
    expect(seen()).toEqual(['hook other started begin -']);
  });

  it('releases a VM the config no longer names when the state file (also a custom one) holds its devices', () => {
    install();
    mkdirSync(join(root, 'srv'), { recursive: true });
    writeFileSync(join(root, 'etc/qemu-hook/config.yaml'), 'stateFile: "/srv/state.json"\ndomains: {}\n');
    writeFileSync(join(root, 'srv/state.json'), '{"version":1,"records":[{"domain":"gone"}]}');
    run('gone', 'release', 'end', '-');
    run('other', 'release', 'end', '-');
    expect(seen()).toEqual(['hook gone release end -']);
  });

  it('passes Node’s failure on for prepare, never for reconnect or release', () => {
    install(1);
    expect(run('win11', 'prepare', 'begin', '-').status).toBe(1);
    expect(run('win11', 'release', 'end', '-').status).toBe(0);
    mkdirSync(join(root, 'etc/libvirt/hooks/qemu.d/win11/reconnect/begin'), { recursive: true });
    expect(run('win11', 'reconnect', 'begin', '-').status).toBe(0);
  });

  it('says plainly when Node is gone, and still never fails a reconnect', () => {
    install();
    const text = readFileSync(hook(), 'utf8').replace(
      /^NODE=.*# qemu-hook:node$/m,
      "NODE='/nonexistent/node' # qemu-hook:node",
    );
    writeFileSync(hook(), text);
    const r = run('win11', 'prepare', 'begin', '-');
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('qemu-hook: /nonexistent/node is missing; reinstall qemu-hook (./install.sh)\n');
    mkdirSync(join(root, 'etc/libvirt/hooks/qemu.d/win11/reconnect/begin'), { recursive: true });
    expect(run('win11', 'reconnect', 'begin', '-').status).toBe(0);
  });

  it('starts Node from the startup snapshot only when it was made by this node binary on this CPU', () => {
    install();
    const blob = join(program(), 'dist/qemu-hook.blob');
    const entry = join(program(), 'dist/cli/main.cjs');
    const startedWith = () => {
      const lines = readFileSync(started(), 'utf8').trim().split('\n');
      expect(lines.at(-1)).toBe('stdin <domain/>'); // the XML reached the Node that ran
      return lines.at(-2)?.trim();
    };
    // no snapshot: the code-cached entry
    run('win11', 'prepare', 'begin', '-');
    expect(startedWith()).toBe(`entry ${entry}`);
    mkdirSync(join(program(), 'dist'), { recursive: true });
    writeFileSync(blob, 'blob');
    const node = statSync(fakeNode());
    const binary = `${node.size} ${Math.floor(node.mtimeMs / 1000)}`;
    const cpu = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('flags'));
    // made by this node on this CPU (as the build records them), on a strict and a non-strict event
    writeFileSync(`${blob}.node`, `${binary}\n${cpu}\n`);
    run('win11', 'prepare', 'begin', '-');
    expect(startedWith()).toBe(`snapshot ${blob}`);
    run('win11', 'release', 'end', '-');
    expect(startedWith()).toBe(`snapshot ${blob}`);
    // by another node, on another CPU, or not said: the entry
    for (const made of [`${node.size + 1} 0\n${cpu}\n`, `${binary}\n${cpu} avx512f\n`, `${binary}\n`]) {
      writeFileSync(`${blob}.node`, made);
      run('win11', 'prepare', 'begin', '-');
      expect(startedWith()).toBe(`entry ${entry}`);
    }
    expect(seen()).toHaveLength(6);
  });

  it('starts the code-cached entry, with the XML, when Node rejects the snapshot after all', () => {
    install();
    const blob = join(program(), 'dist/qemu-hook.blob');
    mkdirSync(join(program(), 'dist'), { recursive: true });
    writeFileSync(blob, 'blob');
    const node = statSync(fakeNode());
    const cpu = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('flags'));
    writeFileSync(`${blob}.node`, `${node.size} ${Math.floor(node.mtimeMs / 1000)}\n${cpu}\n`);
    writeFileSync(rejecting(), '');
    expect(run('win11', 'prepare', 'begin', '-').status).toBe(0);
    expect(readFileSync(started(), 'utf8').trim().split('\n')).toEqual([
      'snapshot rejected',
      `entry ${join(program(), 'dist/cli/main.cjs')} 1`,
      'stdin <domain/>',
    ]);
    expect(seen()).toEqual(['hook win11 prepare begin -']);
  });

  it('runs a chained foreign hook first, with the XML, and stops a start it refuses', () => {
    const foreign = join(root, 'foreign');
    writeFileSync(
      foreign,
      `#!/bin/sh\necho "foreign $* $(cat)" >> ${calls}\n[ "$1" = deny ] && exit 7\nexit 0\n`,
    );
    chmodSync(foreign, 0o755);
    install(0, foreign);
    run('win11', 'prepare', 'begin', '-');
    run('other', 'started', 'begin', '-');
    expect(run('deny', 'prepare', 'begin', '-').status).toBe(7);
    expect(seen()).toEqual([
      'foreign win11 prepare begin - <domain/>',
      'hook win11 prepare begin -',
      'foreign other started begin - <domain/>',
      'foreign deny prepare begin - <domain/>',
    ]);
  });
});
