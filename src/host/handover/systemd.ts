import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LoginSession } from '../../model/handover.js';
import type { ServiceManager } from '../../model/ports.js';
import { type ChildResult, runChild } from './child.js';

/** The states `systemctl is-active` exits 0 for: the unit is up. */
export const ACTIVE_STATES: ReadonlySet<string> = new Set(['active', 'reloading', 'refreshing']);
/** Those, and the units on their way up or down: not stopped yet, nor to be taken for stopped. */
const STILL_UP: ReadonlySet<string> = new Set([...ACTIVE_STATES, 'activating', 'deactivating']);

/**
 * The units `systemctl is-active <units…>` says are in one of `up` (by default: up, or on their way
 * up or down): one state per unit, in order; exit status 0 when one is active, 3 (4 on newer
 * systemd) when none is. Any other answer (systemd not reachable) is no answer, and must not read
 * as "inactive".
 */
export function activeFromIsActive(
  units: readonly string[],
  r: ChildResult,
  up: ReadonlySet<string> = STILL_UP,
): ReadonlySet<string> {
  const states = r.stdout.trim().split('\n');
  if (![0, 3, 4].includes(r.code ?? -1) || states.length !== units.length)
    throw new Error(
      `systemctl is-active ${units.join(' ')}: ${(r.stderr || r.stdout).trim().split('\n')[0] || `exit status ${r.code}`}`,
    );
  return new Set(units.filter((_, i) => up.has(states[i]!.trim())));
}

/** Names a hand-over never signals, whatever it holds. */
const NEVER_SIGNALLED = /^(systemd|libvirtd|virtqemud|virtlogd)$/;

/** systemd and logind through systemctl and loginctl, each call under a deadline. */
export class SystemdServiceManager implements ServiceManager {
  constructor(
    private readonly timeoutMs: number,
    private readonly proc: string,
  ) {}

  /** Up in systemd's own sense (what `is-active` exits 0 for): a give-back verified by it is done. */
  async isActive(unit: string): Promise<boolean> {
    return activeFromIsActive([unit], await this.isActiveAnswer([unit]), ACTIVE_STATES).has(unit);
  }

  async activeAmong(units: readonly string[]): Promise<ReadonlySet<string>> {
    if (units.length === 0) return new Set();
    return activeFromIsActive(units, await this.isActiveAnswer(units));
  }

  private isActiveAnswer(units: readonly string[]): Promise<ChildResult> {
    return runChild('systemctl', ['is-active', ...units], { timeoutMs: this.timeoutMs });
  }

  async stop(units: readonly string[]): Promise<void> {
    await this.ok('systemctl', ['stop', ...units]);
  }

  async start(unit: string): Promise<void> {
    await this.ok('systemctl', ['start', unit]);
  }

  async sessions(): Promise<readonly LoginSession[]> {
    const list = await this.ok('loginctl', ['list-sessions', '--no-legend', '--no-pager']);
    const ids = list
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[0])
      .filter((id): id is string => !!id);
    if (ids.length === 0) return [];
    const shown = await this.ok('loginctl', [
      'show-session',
      ...ids,
      '-p',
      'Id',
      '-p',
      'Name',
      '-p',
      'User',
      '-p',
      'Seat',
      '-p',
      'Type',
    ]);
    return shown
      .split(/\n\s*\n/)
      .map((block) =>
        Object.fromEntries(
          block.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
        ),
      )
      .filter((p) => p['Id'])
      .map((p) => ({
        id: p['Id']!,
        user: p['Name'] ?? '',
        uid: Number(p['User'] ?? -1),
        seat: p['Seat'] || null,
        type: p['Type'] || 'unspecified',
      }));
  }

  async stopUserUnit(user: string, unit: string): Promise<void> {
    await this.ok('systemctl', ['--user', '-M', `${user}@`, 'stop', unit]);
  }

  async terminateSession(id: string): Promise<void> {
    await this.ok('loginctl', ['terminate-session', id]);
  }

  async signal(pid: number, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    if (pid <= 1) throw new Error(`refusing to signal pid ${pid}`);
    let comm = '';
    try {
      comm = readFileSync(join(this.proc, String(pid), 'comm'), 'utf8').trim();
    } catch {
      return; // gone already
    }
    if (NEVER_SIGNALLED.test(comm)) throw new Error(`refusing to signal ${comm} (pid ${pid})`);
    process.kill(pid, signal);
  }

  private async ok(command: string, args: string[]): Promise<string> {
    const r = await runChild(command, args, { timeoutMs: this.timeoutMs });
    if (r.code !== 0)
      throw new Error(
        `${command} ${args.join(' ')}: ${(r.stderr || r.stdout).trim().split('\n')[0] || `exit status ${r.code}`}`,
      );
    return r.stdout;
  }
}
