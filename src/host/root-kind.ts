import { existsSync } from 'node:fs';
import { join } from 'node:path';

// A --root folder is one of two things. A fixture host carries var/lib/qemu-hook-fixture/: the
// simulated kernel, systemd and logind that the hook, `recover` and `apply` write to. A snapshot of
// a real host (`qemu-hook snapshot`) has none: it is what the host showed, replayed for reading
// (devices, check, --simulate); its systemd/logind answers, when they could be read, are in
// var/lib/qemu-hook-snapshot/services.json.

export const FIXTURE_STATE_DIR = 'var/lib/qemu-hook-fixture';
export const SNAPSHOT_STATE_DIR = 'var/lib/qemu-hook-snapshot';
/** CapturedServices (host/snapshot/services.ts), written by `snapshot`, read on a replay. */
export const SNAPSHOT_SERVICES_FILE = `${SNAPSHOT_STATE_DIR}/services.json`;

/** True for a root that simulates a host's kernel and services (a fixture), false for a replay. */
export function hasFixtureState(root: string): boolean {
  return existsSync(join(root, FIXTURE_STATE_DIR));
}
