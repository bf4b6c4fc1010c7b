import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import { type HostPaths, underRoot } from '../model/paths.js';

// What sshd and sudo do with their config: a file that decides what root does must be changeable by
// root alone. The config, its folder and the fault-injection file beside it, the state folder and
// the log folder: each must be owned by root and not writable by group or others. Under a fixture
// --root, whoever owns the root folder stands for root (tests do not run as root everywhere).

/** The uid that counts as root for paths under `root`. */
export function trustedUid(root: string): number {
  return root === '/' ? 0 : statSync(root).uid;
}

/** Everything the program trusts for one host: the config file and the state and log files it names. */
export function trustedPaths(paths: HostPaths, files: { stateFile: string; logFile: string }): string[] {
  return [
    paths.configFile,
    dirname(paths.configFile),
    faultInjectionFile(paths),
    dirname(underRoot(paths.root, files.stateFile)),
    dirname(underRoot(paths.root, files.logFile)),
  ];
}

export function faultInjectionFile(paths: HostPaths): string {
  return `${dirname(paths.configFile)}/fault-injection`;
}

/**
 * One line per path that is not safe: which path, what is wrong, the command that fixes it. A path
 * that does not exist is fine (nobody can have planted it; it is created by root, safely).
 */
export function trustProblems(paths: readonly string[], uid: number): string[] {
  const out: string[] = [];
  for (const path of new Set(paths)) {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(path);
    } catch {
      continue;
    }
    if (st.uid !== uid) {
      const owner = uid === 0 ? 'root' : `uid ${uid} (the owner of the --root folder)`;
      out.push(
        `${path} is owned by uid ${st.uid}, not ${owner}: anyone who can change it controls what qemu-hook does as root; run: chown ${uid === 0 ? 'root:root' : uid} ${path}`,
      );
    } else if (st.mode & 0o022) {
      const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
      out.push(
        `${path} is writable by ${writers(st.mode)} (mode ${mode}): anyone who can change it controls what qemu-hook does as root; run: chmod go-w ${path}`,
      );
    }
  }
  return out;
}

function writers(mode: number): string {
  const group = (mode & 0o020) !== 0;
  const others = (mode & 0o002) !== 0;
  return group && others ? 'group and others' : group ? 'group' : 'others';
}
