export { StateCorruptError, StateLockError, StateVersionError } from './errors.js';
export { type LoadOptions, loadState, saveState } from './file.js';
export { LOCK_DEFAULTS, type LockOptions, lockPathFor, withStateLock } from './lock.js';
export {
  recordFor,
  recordsFor,
  removeRecord,
  staleRecords,
  upsertRecord,
  withoutStale,
} from './records.js';
export {
  emptyState,
  STATE_VERSION,
  type StateFile,
  StateFileSchema,
  type StatePhase,
  type StateRecord,
  StateRecordSchema,
} from './schema.js';
