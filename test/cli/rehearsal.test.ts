import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Rehearsal } from '../../src/cli/resident/rehearsal.js';
import { rehearseHandOver } from '../../src/cli/resident/worker.js';
import { loadConfigFile } from '../../src/config/load.js';
import { hostPaths } from '../../src/model/paths.js';
import { treeHash } from '../reliability/support/host.js';
import { hostCopies } from '../support/cli.js';

// A resident hook's worker rehearses its event while it waits (src/cli/resident/rehearsal.ts): it
// must read the host and change nothing, and give way the moment its event comes.

const copy = hostCopies();

async function rehearsalOf(root: string, quietMs = 0) {
  const paths = hostPaths(root);
  const { config } = await loadConfigFile(paths.configFile);
  return new Rehearsal(paths, config, quietMs);
}

describe('the resident worker’s rehearsal', () => {
  it('runs every step of its rounds on a fixture host and leaves every file as it was', async () => {
    const root = copy('workstation');
    // A device on record too: the release step then checks the recorded one.
    const state = join(root, 'var/lib/qemu-hook/state.json');
    writeFileSync(
      state,
      JSON.stringify({
        version: 1,
        records: [
          {
            domain: 'win11',
            address: '0000:01:00.0',
            originalDriver: 'nvidia',
            bootId: null,
            phase: 'detached',
            since: '2026-12-01T10:00:00.000Z',
            entry: 'gpu',
          },
        ],
      }),
    );
    const before = treeHash(root);
    const rehearsal = await rehearsalOf(root);
    expect(rehearsal.steps).toBe(15); // 3 rounds: the host read, 3 VMs planned, a release's checks
    expect(await rehearsal.start()).toBe(rehearsal.steps);
    expect(treeHash(root)).toEqual(before);
  });

  it('counts only the steps that ran through, and leaves a corrupt state file where it is', async () => {
    const root = copy('workstation');
    writeFileSync(join(root, 'var/lib/qemu-hook/state.json'), '{ torn');
    const before = treeHash(root);
    expect(await (await rehearsalOf(root)).start()).toBe(0);
    // The event moves it aside and says so; a rehearsal only reads.
    expect(treeHash(root)).toEqual(before);
  });

  it('reads nothing on the word of a config others can write', async () => {
    const root = copy('workstation');
    chmodSync(join(root, 'etc/qemu-hook/config.yaml'), 0o666);
    expect(await (await rehearsalOf(root)).start()).toBe(0);
  });

  it('stops before its first step when the event comes during the quiet time', async () => {
    const rehearsal = await rehearsalOf(copy('workstation'), 50);
    const running = rehearsal.start();
    rehearsal.stop();
    expect(await running).toBe(0);
  });

  it('leaves the worker at its own priority, for the event, once it is over', async () => {
    const rehearsal = await rehearsalOf(copy('workstation'));
    const was = getPriority();
    expect(await rehearsal.start()).toBe(rehearsal.steps);
    expect(getPriority()).toBe(was);
  });

  it("takes the worker's hand-over as a step of each round, when given one", async () => {
    const root = copy('workstation');
    const paths = hostPaths(root);
    const { config } = await loadConfigFile(paths.configFile);
    let handOvers = 0;
    const rehearsal = new Rehearsal(paths, config, 0, undefined, async () => handOvers++);
    expect(rehearsal.steps).toBe(18);
    expect(await rehearsal.start()).toBe(18);
    expect(handOvers).toBe(3);
  });
});

describe("the worker's hand-over rehearsal", () => {
  it('takes a connection of its own over as an event is taken, and leaves nothing behind', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'qemu-hook-test-'));
    const was = process.env['TMPDIR'];
    process.env['TMPDIR'] = tmp;
    try {
      expect(await rehearseHandOver()).toBe(true); // the request read whole, through the event's code
      expect(await rehearseHandOver()).toBe(true);
      expect(readdirSync(tmp)).toEqual([]);
    } finally {
      if (was === undefined) delete process.env['TMPDIR'];
      else process.env['TMPDIR'] = was;
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
