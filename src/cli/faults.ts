import { dirname, join } from 'node:path';
import { faultsFromFile } from '../hook/faults.js';
import { installFaults } from '../model/faults.js';
import type { HostPaths } from '../model/paths.js';

/** For the commands that change the host: crash injection from `fault-injection` beside the config. */
export function installFaultSwitch(paths: HostPaths): void {
  installFaults(faultsFromFile(join(dirname(paths.configFile), 'fault-injection')));
}
