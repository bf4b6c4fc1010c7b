// Torn writes: each state write of a prepare and a release (and each definition write of apply)
// fails with ENOSPC or EIO after half of it, or stops half-way as the process dies. The file
// before that write must still be there, whole and readable, and the host must come back whole.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HOSTS } from '../support/cli.js';
import { figure } from './support/figures.js';
import {
  drivers,
  faultFile,
  hasStackTrace,
  hook,
  hosts,
  type Run,
  records,
  run,
  setFault,
  statePath,
} from './support/host.js';

const copy = hosts();
const WIN11 = readFileSync(join(HOSTS, 'workstation/etc/libvirt/qemu/win11.xml'), 'utf8');
const MODES = ['enospc', 'eio', 'torn'] as const;

interface Writer {
  readonly name: string;
  readonly host: string;
  readonly point: 'state-write' | 'define-write';
  readonly before?: (root: string) => Promise<unknown>;
  readonly victim: (root: string) => Promise<Run>;
  /** The exit status when the write fails with an error (the run goes on and answers). */
  readonly failedExit: number;
  /** The file the write replaces, as the rest of the program reads it (timestamps left out). */
  readonly file: (root: string) => string;
}

const prepare = (root: string) => hook(root, 'win11', 'prepare', 'begin', WIN11);
const release = (root: string) => hook(root, 'win11', 'release', 'end', WIN11);
const stateText = (root: string) =>
  existsSync(statePath(root))
    ? JSON.stringify(JSON.parse(readFileSync(statePath(root), 'utf8')), (k, v) =>
        k === 'since' ? undefined : v,
      )
    : '(none)';
const definitionPath = (root: string) => join(root, 'etc/libvirt/qemu/win11.xml');

const WRITERS: Writer[] = [
  {
    name: 'prepare',
    host: 'workstation',
    point: 'state-write',
    victim: prepare,
    failedExit: 1,
    file: stateText,
  },
  {
    name: 'release',
    host: 'workstation',
    point: 'state-write',
    before: prepare,
    victim: release,
    failedExit: 0,
    file: stateText,
  },
  {
    name: 'apply',
    host: 'workstation-moved',
    point: 'define-write',
    victim: (root) => run(root, ['apply', '--vm', 'win11', '--yes', '--root', root]),
    failedExit: 1,
    file: (root) => readFileSync(definitionPath(root), 'utf8'),
  },
];

/** How many times the run writes the file. */
async function writesOf(w: Writer): Promise<number> {
  const root = copy(w.host);
  await w.before?.(root);
  setFault(root, 'trace');
  await w.victim(root);
  setFault(root, null);
  return readFileSync(`${faultFile(root)}.trace`, 'utf8')
    .split('\n')
    .filter((p) => p === w.point).length;
}

const counts = await Promise.all(WRITERS.map(writesOf));
const tally = { cases: 0, intact: 0 };

WRITERS.forEach((w, i) => {
  describe(`torn ${w.point} in ${w.name}`, () => {
    it('writes at least once', () => expect(counts[i]).toBeGreaterThan(0));
    for (let n = 1; n <= counts[i]!; n++) {
      for (const mode of MODES) {
        tally.cases++;
        it.concurrent(`write ${n}, ${mode}: the file before it is intact, the host comes back`, async () => {
          // What the file holds just before write n: the same run, killed as that write begins.
          const ref = copy(w.host);
          await w.before?.(ref);
          setFault(ref, `${w.point}#${n}`);
          expect((await w.victim(ref)).signal).toBe('SIGKILL');
          const expected = w.file(ref);

          const root = copy(w.host);
          const baseline = drivers(root);
          await w.before?.(root);
          setFault(root, `${w.point}#${n} ${mode}`);
          const r = await w.victim(root);
          setFault(root, null);
          if (mode === 'torn') expect(r.signal).toBe('SIGKILL');
          else {
            expect(r.code, r.stderr).toBe(w.failedExit);
            expect(hasStackTrace(r.stderr)).toBe(false);
            if (w.failedExit !== 0) expect(r.stderr).toMatch(mode === 'enospc' ? /ENOSPC/ : /EIO/);
          }
          expect(w.file(root)).toBe(expected);
          expect(() => records(root)).not.toThrow();
          const status = await run(root, ['status', '--root', root]);
          expect(status.code, status.stderr).toBe(0);
          // And the host comes back: libvirt's release, then recover.
          expect((await release(root)).code).toBe(0);
          const rec = await run(root, ['recover', '--root', root]);
          expect(rec.code, rec.stderr).toBe(0);
          expect(drivers(root)).toEqual(baseline);
          if (w.point === 'state-write') {
            expect(records(root)).toEqual([]);
            const left = readdirSync(join(root, 'var/lib/qemu-hook')).filter((f) => f.endsWith('.tmp'));
            if (existsSync(statePath(root)) && mode !== 'torn') expect(left).toEqual([]);
          }
          tally.intact++;
        });
      }
    }
  });
});

describe('torn writes', () => {
  it('every injected failure left the file before it intact', (ctx) => {
    figure(
      ctx,
      `torn writes: ${tally.cases} injected (${MODES.join(', ')} on each state and definition write), previous file intact: ${tally.intact}`,
    );
    expect(tally.intact).toBe(tally.cases);
  });
});
