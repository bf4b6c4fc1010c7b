import { describe, expect, it } from 'vitest';
import { earlyThenOpen, LazyConnection } from '../../../src/host/libvirt/lazy-connection.js';

// The resident worker begins to open libvirt's connection when an event arrives; the run's driver
// control takes that one, and opens its own only if it failed.

class FakeConnection {
  closed = false;
  constructor(readonly name: string) {}
  async close(): Promise<void> {
    this.closed = true;
  }
}

describe('earlyThenOpen', () => {
  it('uses the early connection and never opens another', async () => {
    let opened = 0;
    const lazy = new LazyConnection(
      earlyThenOpen(Promise.resolve(new FakeConnection('early')), async () => {
        opened++;
        return new FakeConnection('fresh');
      }),
    );
    expect((await lazy.get()).name).toBe('early');
    expect((await lazy.get()).name).toBe('early');
    expect(opened).toBe(0);
  });

  it('opens anew once the early one has failed', async () => {
    let opened = 0;
    const early = Promise.reject(new Error('libvirtd was restarting'));
    early.catch(() => {});
    const lazy = new LazyConnection(
      earlyThenOpen(early, async () => {
        opened++;
        return new FakeConnection('fresh');
      }),
    );
    await expect(lazy.get()).rejects.toThrow('libvirtd was restarting');
    expect((await lazy.get()).name).toBe('fresh');
    expect((await lazy.get()).name).toBe('fresh');
    expect(opened).toBe(1);
  });
});
