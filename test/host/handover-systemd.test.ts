import { describe, expect, it } from 'vitest';
import { ACTIVE_STATES, activeFromIsActive } from '../../src/host/handover/systemd.js';

// `systemctl is-active a b c` answers for all units at once: one state per line, in order.
describe('activeFromIsActive', () => {
  const units = ['gdm.service', 'nvidia-persistenced.service', 'gone.service'];

  it('reads each unit state from its line, counting units on their way up or down as up', () => {
    const r = { code: 0, stdout: 'active\ndeactivating\ninactive\n', stderr: '' };
    expect([...activeFromIsActive(units, r)]).toEqual(['gdm.service', 'nvidia-persistenced.service']);
  });

  it("in is-active's own sense (a give-back's check), a unit on its way up or down is not up yet", () => {
    const r = { code: 0, stdout: 'active\ndeactivating\nactivating\n', stderr: '' };
    expect([...activeFromIsActive(units, r, ACTIVE_STATES)]).toEqual(['gdm.service']);
  });

  it('none active: exit status 3 (4 on newer systemd for a unit it does not know)', () => {
    expect(
      activeFromIsActive(units, { code: 3, stdout: 'inactive\nfailed\ninactive\n', stderr: '' }).size,
    ).toBe(0);
    expect(
      activeFromIsActive(units, { code: 4, stdout: 'inactive\ninactive\ninactive\n', stderr: '' }).size,
    ).toBe(0);
  });

  it('systemd not reachable is no answer, never "inactive"', () => {
    const r = { code: 1, stdout: '', stderr: 'Failed to connect to bus: No such file or directory\n' };
    expect(() => activeFromIsActive(units, r)).toThrow(/Failed to connect to bus/);
  });

  it('an answer without one line per unit is no answer', () => {
    expect(() => activeFromIsActive(units, { code: 3, stdout: 'inactive\n', stderr: '' })).toThrow(
      /systemctl is-active gdm\.service nvidia-persistenced\.service gone\.service/,
    );
  });
});
