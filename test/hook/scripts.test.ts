import { chmod, chown, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findScripts, runScripts, scriptsSucceeded } from '../../src/hook/scripts.js';
import type { HookEvent } from '../../src/model/hook-event.js';

const uid = process.getuid!();
const event: HookEvent = { domain: 'win11', op: 'prepare', subop: 'begin', extra: '-' };
// Bigger than a pipe buffer, so a short write would show.
const xml = `<domain type='kvm'><name>win11</name><!-- ${'x'.repeat(200_000)} --></domain>\n`;

let tmp: string;
let hooksDir: string;
let out: string;
let logFile: string;
const groupsToKill: number[] = [];

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'qemu-hook-scripts-'));
  hooksDir = join(tmp, 'qemu.d');
  out = join(tmp, 'out');
  logFile = join(tmp, 'log', 'qemu-hook.log');
  await mkdir(out);
});
afterEach(async () => {
  for (const pgid of groupsToKill.splice(0)) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await rm(tmp, { recursive: true, force: true });
});

/** Folders 0755 whatever the umask, so only what a test changes on purpose is unsafe. */
async function mkdirs(dir: string): Promise<void> {
  const parts = dir.slice(tmp.length + 1).split('/');
  let d = tmp;
  for (const p of parts) {
    d = join(d, p);
    await mkdir(d, { recursive: true });
    await chmod(d, 0o755);
  }
}

async function script(rel: string, body: string, mode = 0o755): Promise<string> {
  const path = join(hooksDir, rel);
  await mkdirs(dirname(path));
  await writeFile(path, `#!/bin/sh\n${body}\n`);
  await chmod(path, mode);
  return path;
}

/** A script that records its name, argv and stdin, then exits with `status`. */
function recorder(name: string, status = 0): string {
  return [
    `printf '%s %s %s|%s|%s|%s\\n' ${name} "$#" "$1" "$2" "$3" "$4" >> ${out}/trace`,
    `cat > ${out}/${name}.stdin`,
    `exit ${status}`,
  ].join('\n');
}

async function trace(): Promise<string[]> {
  const text = await readFile(join(out, 'trace'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean);
}

/** Running, not merely a zombie waiting for a reaper (kill -0 succeeds on zombies). */
async function alive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('findScripts', () => {
  it('finds nothing when there is no folder or file for the event', async () => {
    expect(await findScripts(hooksDir, event)).toEqual([]);
    await mkdirs(join(hooksDir, 'win11/prepare'));
    expect(await findScripts(hooksDir, event)).toEqual([]);
  });

  it('never looks outside the hooks folder', async () => {
    await script('x/y/z', 'exit 0');
    const sneaky = { domain: '..', op: 'qemu.d', subop: 'x' };
    expect(await findScripts(join(hooksDir, 'win11'), { ...event, ...sneaky })).toEqual([]);
    expect(await findScripts(hooksDir, { ...event, domain: 'x/y' })).toEqual([]);
  });

  it('lists executable files in byte order, skips the rest, ignores sub-folders', async () => {
    for (const name of ['b', '20-b', 'B', '10-a', 'a', '_x'])
      await script(`win11/prepare/begin/${name}`, 'exit 0');
    await script('win11/prepare/begin/15-notes.txt', 'exit 0', 0o644);
    await mkdirs(join(hooksDir, 'win11/prepare/begin/old'));
    const found = await findScripts(hooksDir, event, { requiredUid: uid });
    expect(found.map((s) => [s.name.split('/').pop(), s.verdict])).toEqual([
      ['10-a', 'run'],
      ['15-notes.txt', 'skip'],
      ['20-b', 'run'],
      ['B', 'run'],
      ['_x', 'run'],
      ['a', 'run'],
      ['b', 'run'],
    ]);
    expect(found[1]?.reason).toBe('not executable');
    expect(found[0]?.name).toBe('win11/prepare/begin/10-a');
  });

  it('refuses a script not owned by the required user', async () => {
    await script('win11/prepare/begin/10-a', 'exit 0');
    const [s] = await findScripts(hooksDir, event, { requiredUid: uid + 1 });
    expect(s?.verdict).toBe('refuse');
    expect(s?.reason).toContain(`owned by uid ${uid}`);
  });

  it('says "root" when root is required', async () => {
    await script('win11/prepare/begin/10-a', 'exit 0');
    const [s] = await findScripts(hooksDir, event, { requiredUid: uid === 0 ? 1 : 0 });
    expect(s?.reason).toMatch(uid === 0 ? /not uid 1/ : /not root/);
  });

  it.runIf(uid === 0)('by default requires root: refuses a script chowned to nobody', async () => {
    const path = await script('win11/prepare/begin/10-a', 'exit 0');
    await script('win11/prepare/begin/20-b', 'exit 0');
    await chown(path, 65534, 65534);
    const found = await findScripts(hooksDir, event);
    expect(found.map((s) => s.verdict)).toEqual(['refuse', 'run']);
    expect(found[0]?.reason).toBe('it is owned by uid 65534, not root');
  });

  it('refuses a group- or world-writable script', async () => {
    await script('win11/prepare/begin/10-group', 'exit 0', 0o775);
    await script('win11/prepare/begin/20-world', 'exit 0', 0o757);
    await script('win11/prepare/begin/30-fine', 'exit 0', 0o755);
    const found = await findScripts(hooksDir, event, { requiredUid: uid });
    expect(found.map((s) => s.verdict)).toEqual(['refuse', 'refuse', 'run']);
    expect(found[0]?.reason).toContain('writable by group or others (mode 0775)');
  });

  for (const folder of ['', 'win11', 'win11/prepare', 'win11/prepare/begin']) {
    it(`refuses every script when the folder "${folder || 'qemu.d'}" is group-writable`, async () => {
      await script('win11/prepare/begin/10-a', 'exit 0');
      await chmod(join(hooksDir, folder), 0o775);
      const [s] = await findScripts(hooksDir, event, { requiredUid: uid });
      expect(s?.verdict).toBe('refuse');
      expect(s?.reason).toContain(`its folder ${join(hooksDir, folder)}`);
    });
  }

  it('does not judge folders above the hooks folder', async () => {
    await script('win11/prepare/begin/10-a', 'exit 0');
    await chmod(tmp, 0o777);
    const [s] = await findScripts(hooksDir, event, { requiredUid: uid });
    expect(s?.verdict).toBe('run');
  });

  it('follows links, refusing one into an unsafe folder and skipping a broken one', async () => {
    const elsewhere = join(tmp, 'elsewhere');
    await mkdirs(elsewhere);
    await writeFile(join(elsewhere, 'real'), '#!/bin/sh\nexit 0\n');
    await chmod(join(elsewhere, 'real'), 0o755);
    await mkdirs(join(hooksDir, 'win11/prepare/begin'));
    await symlink(join(elsewhere, 'real'), join(hooksDir, 'win11/prepare/begin/10-link'));
    await symlink(join(elsewhere, 'missing'), join(hooksDir, 'win11/prepare/begin/20-broken'));

    const safe = await findScripts(hooksDir, event, { requiredUid: uid });
    expect(safe.map((s) => [s.verdict, s.reason])).toEqual([
      ['run', null],
      ['skip', 'broken symbolic link'],
    ]);

    await chmod(elsewhere, 0o777);
    const [unsafe] = await findScripts(hooksDir, event, { requiredUid: uid });
    expect(unsafe?.verdict).toBe('refuse');
    expect(unsafe?.reason).toContain(elsewhere);
  });

  it('takes <vm>/<op>/<subop> as one script when it is a file', async () => {
    await script('win11/prepare/begin', 'exit 0');
    const found = await findScripts(hooksDir, event, { requiredUid: uid });
    expect(found).toEqual([
      {
        path: join(hooksDir, 'win11/prepare/begin'),
        name: 'win11/prepare/begin',
        verdict: 'run',
        reason: null,
        trust: { uid, from: hooksDir },
      },
    ]);
  });
});

describe('runScripts', () => {
  async function findAndRun(extra: Partial<Parameters<typeof runScripts>[3]> = {}) {
    const scripts = await findScripts(hooksDir, event, { requiredUid: uid });
    return runScripts(scripts, event, xml, { logFile, ...extra });
  }

  it('runs scripts in order with the hook argv and the domain XML on stdin', async () => {
    for (const name of ['20-b', '10-a', 'B']) await script(`win11/prepare/begin/${name}`, recorder(name));
    const results = await findAndRun();
    expect(results.map((r) => r.outcome)).toEqual(['ok', 'ok', 'ok']);
    expect(scriptsSucceeded(results)).toBe(true);
    expect(await trace()).toEqual([
      '10-a 4 win11|prepare|begin|-',
      '20-b 4 win11|prepare|begin|-',
      'B 4 win11|prepare|begin|-',
    ]);
    for (const name of ['10-a', '20-b', 'B'])
      expect(await readFile(join(out, `${name}.stdin`), 'utf8')).toBe(xml);
    expect(results[0]?.pid).toBeGreaterThan(0);
  });

  it('runs the single-file form', async () => {
    await script('win11/release/end', recorder('single'));
    const releaseEvent: HookEvent = { domain: 'win11', op: 'release', subop: 'end', extra: 'shutdown' };
    const scripts = await findScripts(hooksDir, releaseEvent, { requiredUid: uid });
    const results = await runScripts(scripts, releaseEvent, xml, { logFile });
    expect(results.map((r) => r.outcome)).toEqual(['ok']);
    expect(await trace()).toEqual(['single 4 win11|release|end|shutdown']);
    expect(await readFile(join(out, 'single.stdin'), 'utf8')).toBe(xml);
  });

  it('does not run a non-executable file', async () => {
    await script('win11/prepare/begin/10-a', recorder('10-a'));
    await script('win11/prepare/begin/20-off', recorder('20-off'), 0o644);
    await script('win11/prepare/begin/30-c', recorder('30-c'));
    const results = await findAndRun();
    expect(results.map((r) => r.outcome)).toEqual(['ok', 'skipped', 'ok']);
    expect(scriptsSucceeded(results)).toBe(true);
    expect((await trace()).map((l) => l.split(' ')[0])).toEqual(['10-a', '30-c']);
  });

  it('refuses a group-writable script without running it, and stops there', async () => {
    await script('win11/prepare/begin/10-a', recorder('10-a'));
    const unsafe = await script('win11/prepare/begin/20-unsafe', recorder('20-unsafe'), 0o775);
    await script('win11/prepare/begin/30-c', recorder('30-c'));
    const results = await findAndRun();
    expect(results.map((r) => r.outcome)).toEqual(['ok', 'refused']);
    expect(results[1]?.error).toContain(`refused to run ${unsafe}`);
    expect(results[1]?.error).toContain('writable by group or others');
    expect(scriptsSucceeded(results)).toBe(false);
    expect((await trace()).map((l) => l.split(' ')[0])).toEqual(['10-a']);
  });

  it('stops at the first failing script', async () => {
    await script('win11/prepare/begin/10-a', recorder('10-a'));
    const failing = await script('win11/prepare/begin/20-fail', recorder('20-fail', 3));
    await script('win11/prepare/begin/30-c', recorder('30-c'));
    const results = await findAndRun();
    expect(results.map((r) => [r.outcome, r.exitCode])).toEqual([
      ['ok', 0],
      ['failed', 3],
    ]);
    expect(results[1]?.error).toBe(`${failing} exited with status 3`);
    expect((await trace()).map((l) => l.split(' ')[0])).toEqual(['10-a', '20-fail']);
  });

  it('reports a script killed by a signal as failed', async () => {
    await script('win11/prepare/begin/10-a', 'kill -USR1 $$');
    const [r] = await findAndRun();
    expect(r).toMatchObject({ outcome: 'failed', exitCode: null, signal: 'SIGUSR1' });
    expect(r?.error).toContain('killed by SIGUSR1');
  });

  it('sends scripts output to the log file, and a missing log folder is created', async () => {
    await script('win11/prepare/begin/10-a', 'echo to-stdout; echo to-stderr >&2');
    await findAndRun();
    expect(await readFile(logFile, 'utf8')).toBe('to-stdout\nto-stderr\n');
    await findAndRun();
    expect(await readFile(logFile, 'utf8')).toBe('to-stdout\nto-stderr\n'.repeat(2));
  });

  it('passes the given environment', async () => {
    await script('win11/prepare/begin/10-a', `echo "$GREETING|$LC_ALL" > ${out}/env`);
    await findAndRun({ env: { PATH: process.env['PATH'], LC_ALL: 'C', GREETING: 'hello' } });
    expect(await readFile(join(out, 'env'), 'utf8')).toBe('hello|C\n');
  });

  it('returns when the script exits even if a background child keeps its output open', async () => {
    await script(
      'win11/prepare/begin/10-bg',
      [`sleep 30 &`, `echo $! > ${out}/bg.pid`, `echo started`, `exit 0`].join('\n'),
    );
    await script('win11/prepare/begin/20-next', recorder('20-next'));
    const results = await findAndRun();
    const bgPid = Number(await readFile(join(out, 'bg.pid'), 'utf8'));
    const scriptPid = results[0]!.pid!;
    groupsToKill.push(scriptPid);

    expect(results.map((r) => r.outcome)).toEqual(['ok', 'ok']);
    expect(await alive(bgPid)).toBe(true); // still holding the log as its stdout
    // Its own process group and session, led by the script: not ours.
    const stat = (await readFile(`/proc/${bgPid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
    const [pgid, session] = [Number(stat[2]), Number(stat[3])];
    expect(pgid).toBe(scriptPid);
    expect(session).toBe(scriptPid);
    expect(await readFile(logFile, 'utf8')).toContain('started');

    process.kill(-pgid, 'SIGKILL');
    for (let i = 0; i < 100 && (await alive(bgPid)); i++) await sleep(50);
    expect(await alive(bgPid)).toBe(false);
  });

  it('on timeout stops the whole process group and reports it', async () => {
    await script('win11/prepare/begin/10-slow', [`sleep 30 &`, `echo $! > ${out}/bg.pid`, `wait`].join('\n'));
    await script('win11/prepare/begin/20-next', recorder('20-next'));
    const results = await findAndRun({ timeoutMs: 300 });
    groupsToKill.push(results[0]!.pid!);
    expect(results.map((r) => r.outcome)).toEqual(['timeout']);
    expect(results[0]?.error).toContain('did not finish within 0.3 s');
    const bgPid = Number(await readFile(join(out, 'bg.pid'), 'utf8'));
    for (let i = 0; i < 100 && (await alive(bgPid)); i++) await sleep(50);
    expect(await alive(bgPid)).toBe(false);
    expect(await trace()).toEqual([]);
  });

  it('reports a script that cannot be executed', async () => {
    await script('win11/prepare/begin/10-a', 'exit 0');
    await writeFile(join(hooksDir, 'win11/prepare/begin/10-a'), '#!/nonexistent/interpreter\n');
    const [r] = await findAndRun();
    expect(r?.outcome).toBe('error');
    expect(r?.error).toContain('could not run');
  });

  it('opens no log when nothing runs', async () => {
    await script('win11/prepare/begin/10-off', 'exit 0', 0o644);
    const results = await findAndRun({ logFile: join(tmp, 'no/such/log') });
    expect(results.map((r) => r.outcome)).toEqual(['skipped']);
    await expect(readFile(join(tmp, 'no/such/log'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
