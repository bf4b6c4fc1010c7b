import { LibvirtError } from '../../model/errors.js';
import type { NativeLibvirtFailure } from './native.js';

/** A rejection from the addon that carries libvirt's virError fields. */
export function isNativeFailure(err: unknown): err is NativeLibvirtFailure {
  if (!(err instanceof Error)) return false;
  const e = err as Partial<NativeLibvirtFailure>;
  return typeof e.code === 'number' && typeof e.domain === 'number';
}

/** libvirt failures become LibvirtError naming `operation`; anything else is returned as is. */
export function toLibvirtError(err: unknown, operation: string): unknown {
  if (!isNativeFailure(err)) return err;
  return new LibvirtError(`${operation}: ${err.message}`, err.code, err.domain, operation);
}

/** Runs one addon call, mapping its failure. */
export async function libvirtCall<T>(operation: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw toLibvirtError(err, operation);
  }
}

/** Whether `err` is a LibvirtError with libvirt's error number `code` (e.g. VIR_ERR_NO_DOMAIN). */
export function isLibvirtErrorCode(err: unknown, code: number): err is LibvirtError {
  return err instanceof LibvirtError && err.code === code;
}
