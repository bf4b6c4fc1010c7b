#!/usr/bin/env node
// Builds native/ (the libvirt binding) with npm's own node-gyp. npm runs this as the package's
// `install` script. The build is optional: without libvirt's headers, pkg-config or a compiler it
// prints what to install and exits 0, so `npm ci` still succeeds and everything that does not talk
// to libvirt (--simulate --root, devices --root) works. It never fails the install.
//
// PKG_CONFIG names the pkg-config program (as for autoconf/meson); PKG_CONFIG=false makes the
// build look for libvirt and not find it.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'native');
const addon = join(nativeDir, 'build', 'Release', 'qemu_hook_libvirt.node');
const tag = 'qemu-hook:';

const INSTALL = {
  debian: 'apt-get install libvirt-dev pkg-config g++ make python3',
  fedora: 'dnf install libvirt-devel pkgconf gcc-c++ make python3',
  arch: 'pacman -S libvirt base-devel',
};

function ok(command, args, env = process.env) {
  const r = spawnSync(command, args, { stdio: 'ignore', env, shell: false });
  return r.status === 0;
}

/** Which of the build's prerequisites are missing, in words a user can act on. */
function missingPrerequisites() {
  const missing = [];
  const pkgConfig = process.env.PKG_CONFIG || 'pkg-config';
  if (!ok(pkgConfig, ['--version'])) missing.push('pkg-config');
  else if (!ok(pkgConfig, ['--exists', 'libvirt'])) missing.push("libvirt's development files");
  if (!ok(process.env.CXX || 'g++', ['--version'])) missing.push('a C++ compiler');
  if (!ok('make', ['--version'])) missing.push('make');
  const python = process.env.PYTHON || process.env.npm_config_python || 'python3';
  if (!ok(python, ['--version'])) missing.push('python3');
  return missing;
}

/** The install command for this distribution family, or all of them when unknown. */
function installHint() {
  let ids = '';
  try {
    const text = readFileSync('/etc/os-release', 'utf8');
    ids = [...text.matchAll(/^(?:ID|ID_LIKE)=(.*)$/gm)].map((m) => m[1].replace(/"/g, '')).join(' ');
  } catch {
    // no os-release: name every family
  }
  const family = /\b(debian|ubuntu)\b/.test(ids)
    ? 'debian'
    : /\b(fedora|rhel|centos)\b/.test(ids)
      ? 'fedora'
      : /\barch\b/.test(ids)
        ? 'arch'
        : null;
  if (family) return INSTALL[family];
  return `Debian/Ubuntu: ${INSTALL.debian}; Fedora/RHEL: ${INSTALL.fedora}; Arch: ${INSTALL.arch}`;
}

/** node-gyp as [command, ...args]: npm's own (npm sets npm_config_node_gyp for scripts). */
function nodeGyp() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, fromNpm];
  const bundled = join(
    dirname(process.execPath),
    '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
  );
  if (existsSync(bundled)) return [process.execPath, bundled];
  return ['npm', 'exec', '--no', '--', 'node-gyp'];
}

/**
 * Headers of the running Node, so node-gyp downloads nothing. npm passes `nodedir` from npmrc as
 * npm_config_nodedir; outside npm, use the install prefix when it ships this version's headers
 * (distribution packages and nodejs.org tarballs both do).
 */
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = join(dirname(process.execPath), '..');
  try {
    const h = readFileSync(join(prefix, 'include/node/node_version.h'), 'utf8');
    const v = ['MAJOR', 'MINOR', 'PATCH'].map(
      (k) => new RegExp(`#define NODE_${k}_VERSION (\\d+)`).exec(h)?.[1],
    );
    if (`v${v.join('.')}` === process.version) return [`--nodedir=${prefix}`];
  } catch {
    // no headers there: node-gyp fetches them
  }
  return [];
}

function skip(why) {
  console.warn(
    `${tag} libvirt binding not built (${why}); commands that talk to libvirt will ask for it. ` +
      `Install: ${installHint()}, then re-run npm ci (or install.sh).`,
  );
  process.exit(0);
}

function main() {
  const missing = missingPrerequisites();
  if (missing.length > 0) skip(`missing ${missing.join(', ')}`);

  const [command, ...prefix] = nodeGyp();
  const args = [...prefix, 'rebuild', '--jobs=max', ...nodedirArgs()];
  const started = process.hrtime.bigint();
  const r = spawnSync(command, args, { cwd: nativeDir, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;

  if (r.status !== 0 || !existsSync(addon)) {
    const output = `${r.stdout ?? ''}${r.stderr ?? ''}`.trimEnd().split('\n').slice(-25).join('\n');
    if (output) console.warn(output);
    const reason = r.error ? r.error.message : `node-gyp exited with ${r.status ?? r.signal}`;
    skip(`build failed: ${reason}`);
  }
  console.log(`${tag} built the libvirt binding (${addon}) in ${seconds.toFixed(1)} s`);
}

try {
  main();
} catch (err) {
  skip(`unexpected error: ${err instanceof Error ? err.message : String(err)}`);
}
