import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMANDS, OPTIONS } from '../../src/cli/spec.js';
import { cli, HOSTS, hostCopies } from '../support/cli.js';

const WS = join(HOSTS, 'workstation');
const copy = hostCopies();

/** The one line on stderr of a usage error (exit 2, nothing on stdout). */
function usageError(args: string[]): string {
  const r = cli(args);
  expect(r.code, args.join(' ')).toBe(2);
  expect(r.stdout).toBe('');
  const lines = r.stderr.split('\n').filter(Boolean);
  expect(lines, args.join(' ')).toHaveLength(1);
  return lines[0]!;
}

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

describe('help', { timeout: 120_000 }, () => {
  // One program start per command: allow for a busy machine.
  it('<command> --help and help <command>: that command, its options and an example', {
    timeout: 120_000,
  }, () => {
    for (const c of COMMANDS.filter((x) => x.name !== 'simulate' && x.name !== 'help')) {
      const own = cli([c.name, '--help']);
      expect(own.code, c.name).toBe(0);
      expect(own.stdout).toMatch(new RegExp(`^usage: qemu-hook ${c.name}\\b`));
      expect(own.stdout).toMatch(/\nexamples?:\n {2}\S/);
      for (const o of c.options) expect(own.stdout, `${c.name} --${o}`).toContain(`--${o}`);
    }
    expect(cli(['help', 'log']).stdout).toBe(cli(['log', '--help']).stdout);
    // Not the same text for all: each is its own.
    expect(cli(['devices', '--help']).stdout).not.toBe(cli(['apply', '--help']).stdout);
    expect(cli(['apply', '--help']).stdout).toContain('--non-interactive');
  });

  it('--simulate --help, --simulate VM --help and help simulate: the simulate help', () => {
    const a = cli(['--simulate', '--help']);
    expect(a).toMatchObject({ code: 0, stderr: '' });
    expect(a.stdout).toMatch(/^usage: qemu-hook --simulate VM prepare\|release/);
    expect(cli(['--simulate', 'win11', '--help']).stdout).toBe(a.stdout);
    expect(cli(['help', 'simulate']).stdout).toBe(a.stdout);
    expect(cli(['-h']).stdout).toMatch(/^usage: qemu-hook <command>/);
  });

  it('help for a command that does not exist says so, with the closest one', () => {
    expect(usageError(['help', 'devcie'])).toMatch(/unknown command "devcie"; did you mean devices\?/);
  });
});

describe('mistakes, answered in our words', { timeout: 120_000 }, () => {
  it('an unknown option: the closest valid one of that command, never Node parser text', () => {
    expect(usageError(['devices', '--jsn'])).toBe(
      'qemu-hook: unknown option --jsn; did you mean --json? (qemu-hook devices --help lists the options)',
    );
    expect(usageError(['--simulate', 'win11', 'prepare', '--roo', WS])).toMatch(/did you mean --root\?/);
    expect(usageError(['apply', '--dryrun'])).toMatch(/did you mean --dry-run\?/);
    expect(usageError(['status', '--frobnicate'])).toMatch(/^qemu-hook: unknown option --frobnicate \(/);
    for (const args of [['devices', '--jsn'], ['--simulate'], ['devices', '--root'], ['-x']]) {
      expect(cli(args).stderr).not.toMatch(/ERR_PARSE_ARGS|TypeError|ambiguous|Option '/);
    }
  });

  it('an unknown command: the closest one, or the command that does it', () => {
    expect(usageError(['devcie'])).toMatch(/unknown command "devcie"; did you mean devices\?/);
    expect(usageError(['staus'])).toMatch(/did you mean status\?/);
    expect(usageError(['groups'])).toMatch(/did you mean qemu-hook devices --groups\?/);
    expect(usageError(['zzzzzz'])).toMatch(/^qemu-hook: unknown command "zzzzzz" \(qemu-hook --help/);
  });

  it('an option of another command, a missing value, a flag given a value', () => {
    expect(usageError(['devices', '--yes'])).toMatch(
      /--yes does not apply to devices; see qemu-hook devices --help/,
    );
    expect(usageError(['devices', '--root'])).toMatch(/--root needs a value: --root DIR/);
    expect(usageError(['devices', '--json=yes'])).toMatch(/--json takes no value/);
  });

  it('a --root that does not exist, or is a file, is an error (exit 2), not an empty host', () => {
    expect(usageError(['devices', '--root', '/nonexistent/qemu-hook'])).toMatch(
      /--root \/nonexistent\/qemu-hook does not exist/,
    );
    expect(usageError(['status', '--root', join(WS, 'etc/qemu-hook/config.yaml')])).toMatch(
      /is not a folder/,
    );
  });

  it('--json where it makes no sense is refused with a clear line', () => {
    expect(usageError(['apply', '--json', '--root', WS])).toMatch(/--json goes with apply --dry-run only/);
    expect(usageError(['completion', 'bash', '--json'])).toMatch(/--json does not apply to completion/);
  });
});

describe('one name for a domain everywhere', { timeout: 120_000 }, () => {
  it('--vm and --domain both name the domain for apply, recover, status and log', () => {
    for (const flag of ['--vm', '--domain']) {
      const apply = cli(['apply', '--root', WS, flag, 'win11', '--dry-run']);
      expect(apply.code, flag).toBe(0);
      expect(apply.stdout).toMatch(/^win11: definition already in step/);
      expect(apply.stdout).not.toMatch(/router|backup/);
      expect(cli(['recover', '--root', WS, flag, 'win11', '--dry-run']).stdout).toMatch(
        /nothing recorded for win11/,
      );
      expect(cli(['status', '--root', WS, flag, 'win11']).stdout).toMatch(/no devices held by win11/);
      expect(cli(['log', '--root', WS, flag, 'win11']).code).toBe(0);
    }
    expect(usageError(['apply', '--root', WS, '--vm', 'nosuch', '--dry-run'])).toMatch(
      /configured: win11, router, backup/,
    );
  });

  it('--non-interactive is --yes', () => {
    const root = copy('workstation-moved');
    const r = cli(['apply', '--root', root, '--vm', 'win11', '--non-interactive']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/win11: definition updated/);
  });
});

describe('--json on the commands that report', { timeout: 120_000 }, () => {
  it('apply --dry-run --json: each domain with its outcome and diff, nothing for a person on stdout', () => {
    const root = copy('workstation-moved');
    const r = cli(['apply', '--root', root, '--vm', 'win11', '--dry-run', '--json']);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out.dryRun).toBe(true);
    expect(out.domains).toHaveLength(1);
    expect(out.domains[0]).toMatchObject({ domain: 'win11', outcome: 'would-change', errors: [] });
    expect(out.domains[0].diff).toContain(
      "+        <address domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>",
    );
  });

  it('recover --json', () => {
    const root = copy('workstation');
    writeFileSync(
      join(root, 'var/lib/qemu-hook/state.json'),
      JSON.stringify({
        version: 1,
        records: [
          {
            domain: 'win11',
            entry: 'gpu',
            address: '0000:01:00.0',
            originalDriver: 'nvidia',
            bootId: null,
            phase: 'detached',
            since: '2026-01-01T00:00:00.000Z',
          },
        ],
      }),
    );
    const r = cli(['recover', '--root', root, '--dry-run', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      dryRun: true,
      running: [],
      restored: [{ address: '0000:01:00.0', driver: 'nvidia' }],
      failed: [],
    });
  });
});

describe('completion and man page, from the same tables as --help', { timeout: 120_000 }, () => {
  it('bash: commands, per-command options, events, and VM names from the config', () => {
    const r = cli(['completion', 'bash']);
    expect(r.code).toBe(0);
    const complete = (...words: string[]) => {
      const script = `${r.stdout}
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _qemu_hook; echo "\${COMPREPLY[*]}"`;
      const b = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
      expect(b.stderr).toBe('');
      return b.stdout.trim().split(' ');
    };
    expect(complete('qemu-hook', 'dev')).toEqual(['devices']);
    expect(complete('qemu-hook', 'devices', '--g')).toEqual(['--groups']);
    expect(complete('qemu-hook', '--simulate', 'win11', '')).toEqual(['prepare', 'release']);
    expect(complete('qemu-hook', '--root', WS, 'apply', '--vm', '')).toEqual(['win11', 'router', 'backup']);
    expect(complete('qemu-hook', '--root', WS, '--simulate', 'w')).toEqual(['win11']);
    expect(complete('qemu-hook', 'log', '--')).toEqual(
      expect.arrayContaining(['--vm', '--domain', '--follow', '--json', '--root']),
    );
    // Every typed command is offered.
    expect(complete('qemu-hook', '')).toEqual(
      expect.arrayContaining(COMMANDS.filter((c) => c.name !== 'simulate').map((c) => c.name)),
    );
  });

  it.skipIf(!has('zsh'))('zsh: the function file parses', () => {
    const r = cli(['completion', 'zsh']);
    expect(r.stdout).toMatch(/^#compdef qemu-hook\n/);
    expect(spawnSync('zsh', ['-n'], { input: r.stdout }).status).toBe(0);
  });

  it('man: every command and option, and groff finds nothing wrong', () => {
    const r = cli(['man']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\.TH QEMU-HOOK 8 /);
    for (const c of COMMANDS) expect(r.stdout).toContain(c.usage.split(' ')[0]!.replace(/-/g, '\\-'));
    for (const o of OPTIONS) expect(r.stdout, o.name).toContain(`\\-\\-${o.name.replace(/-/g, '\\-')}`);
    expect(r.stdout).toContain('/usr/local/share/doc/qemu\\-hook/README.md');
    if (has('groff')) {
      const g = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z'], { input: r.stdout, encoding: 'utf8' });
      expect(g.status).toBe(0);
      expect(g.stderr).toBe('');
    }
  });
});
