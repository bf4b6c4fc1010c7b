export { StateCorruptError, StateLockError, StateVersionError } from './errors.js';
export { type LoadOptions, loadState, saveState } from './file.js';
export { LOCK_DEFAULTS, type LockOptions, lockPathFor, withStateLock } from './lock.js';
export {
  handoversFor,
  hasHandover,
  recordFor,
  recordsFor,
  removeHandover,
  removeRecord,
  staleHandovers,
  staleRecords,
  upsertHandover,
  upsertRecord,
  withHandovers,
  withoutStale,
} from './records.js';
export {
  emptyState,
  type HandoverRecord,
  HandoverRecordSchema,
  STATE_VERSION,
  type StateFile,
  StateFileSchema,
  type StatePhase,
  type StateRecord,
  StateRecordSchema,
} from './schema.js';
