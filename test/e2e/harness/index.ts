export { canRunLibvirtd, libvirtdUnavailableReason } from './availability.js';
export { pciHostdevXml, type TinyDomainOptions, tinyDomainXml } from './domain-xml.js';
export {
  eventsOf,
  type HookCall,
  readHookCalls,
  recordingHookScript,
  writeHookScript,
} from './hook-recorder.js';
export {
  assertSafeEtcDir,
  type DaemonTimings,
  ensureLibvirtQemuUser,
  type PrivateLibvirtd,
  type StartOptions,
  startLibvirtd,
} from './libvirtd.js';
export { type RunResult, run } from './run.js';
