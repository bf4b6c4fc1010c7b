/** The part of pino the hook uses; tests pass a recorder. */
export interface HookLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export const silentLogger: HookLogger = { info() {}, warn() {}, error() {}, debug() {} };
