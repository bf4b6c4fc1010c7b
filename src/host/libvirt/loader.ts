import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { errorMessage, UsageError } from '../../model/errors.js';
import { programFile } from '../program-location.js';
import type { NativeBinding } from './native.js';

// The addon is optional at install time (scripts/build-native.mjs skips it when libvirt's headers
// or a compiler are missing), so it is loaded on first use only: --simulate --root and
// devices --root never reach this file's loader.

/**
 * native/build/Release/qemu_hook_libvirt.node of the checkout or installed tree this code runs
 * from: src/host/ in tests, a bundle in dist/ once built, so look a few levels up. Found on first
 * use, not when this module loads: a startup snapshot loads it where it was built.
 */
export function defaultAddonPath(): string {
  addonPath ??= findAddon(dirname(programFile()));
  return addonPath;
}
let addonPath: string | undefined;

function findAddon(from: string): string {
  const candidates = ['..', '../..', '../../..'].map((up) =>
    resolve(from, up, 'native/build/Release/qemu_hook_libvirt.node'),
  );
  // Not built: name the place the build would put it (beside native/binding.gyp), not a guess.
  return (
    candidates.find((p) => existsSync(p)) ??
    candidates.find((p) => existsSync(resolve(dirname(p), '../../binding.gyp'))) ??
    candidates[0]!
  );
}

export const BUILD_PREREQUISITES =
  'Debian/Ubuntu: apt-get install libvirt-dev pkg-config g++ make python3; ' +
  'Fedora/RHEL: dnf install libvirt-devel pkgconf gcc-c++ make python3; ' +
  'Arch: pacman -S libvirt base-devel';

const loaded = new Map<string, NativeBinding>();

/** The binding at `path` (loaded once per path), or a UsageError that says what to install. */
export function loadLibvirtBinding(path: string = defaultAddonPath()): NativeBinding {
  const cached = loaded.get(path);
  if (cached) return cached;
  if (!existsSync(path)) {
    throw new UsageError(
      `this command needs the libvirt binding, which is not built (${path} is missing). ` +
        `Install libvirt's development files and a compiler (${BUILD_PREREQUISITES}), ` +
        'then re-run npm ci (or install.sh).',
    );
  }
  let binding: NativeBinding;
  try {
    binding = createRequire(path)(path) as NativeBinding;
  } catch (err) {
    throw new UsageError(
      `the libvirt binding ${path} cannot be loaded (${errorMessage(err)}). ` +
        `Make sure libvirt is installed (${BUILD_PREREQUISITES}), then re-run npm ci (or install.sh) to rebuild it.`,
      { cause: err },
    );
  }
  if (typeof binding?.open !== 'function') {
    throw new UsageError(`${path} is not the qemu-hook libvirt binding; re-run npm ci (or install.sh).`);
  }
  loaded.set(path, binding);
  return binding;
}

/**
 * Ends the process with `code`. Once the binding is loaded, a libvirt call that never returned
 * (a wedged daemon) may still hold a libuv worker thread, and process.exit joins those threads
 * before it exits: it would wait for libvirt forever, and libvirt for the hook. The binding's
 * exitNow is _exit(2); 'exit' listeners run first, and everything this program writes is written
 * synchronously, so nothing is lost.
 */
export function exitProcess(code: number): never {
  for (const binding of loaded.values()) {
    if (typeof binding.exitNow !== 'function') continue; // an addon built before exitNow existed
    process.exitCode = code;
    process.emit('exit', code);
    binding.exitNow(code);
  }
  process.exit(code);
}

/** Whether the binding is built, without loading it (tests skip on this). */
export function libvirtBindingBuilt(path: string = defaultAddonPath()): boolean {
  return existsSync(path);
}
