#!/usr/bin/env node
// Builds the fixture hosts under fixtures/hosts/ from the descriptions in scripts/fixtures/hosts/.
//
//   node scripts/make-fixtures.mjs                      delete and rebuild every host folder
//   node scripts/make-fixtures.mjs --check              exit 1 when the committed trees differ
//   node scripts/make-fixtures.mjs --generate-large DIR --devices 300
//                                                       a benchmark host with 300 PCI functions in DIR
//   --hosts-dir DIR                                     build or check another folder than fixtures/hosts
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildHost, fullAddr } from './fixtures/build-host.mjs';
import intelLaptop from './fixtures/hosts/intel-laptop.mjs';
import { largeHost } from './fixtures/hosts/large.mjs';
import noIommu from './fixtures/hosts/no-iommu.mjs';
import noPciIds from './fixtures/hosts/no-pci-ids.mjs';
import pitfalls from './fixtures/hosts/pitfalls.mjs';
import sharedGroup from './fixtures/hosts/shared-group.mjs';
import singleAmd from './fixtures/hosts/single-amd.mjs';
import singleNvidia from './fixtures/hosts/single-nvidia.mjs';
import twinGpus from './fixtures/hosts/twin-gpus.mjs';
import workstation from './fixtures/hosts/workstation.mjs';
import workstationMoved from './fixtures/hosts/workstation-moved.mjs';
import { diffTrees } from './fixtures/tree-diff.mjs';

const HOSTS = {
  workstation,
  'workstation-moved': workstationMoved,
  'twin-gpus': twinGpus,
  'shared-group': sharedGroup,
  pitfalls,
  'no-iommu': noIommu,
  'no-pci-ids': noPciIds,
  'single-amd': singleAmd,
  'single-nvidia': singleNvidia,
  'intel-laptop': intelLaptop,
};
// Present in every generated host: the mark that a folder is ours to delete.
const MARK = 'var/lib/qemu-hook-fixture/preferred-drivers.json';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pciIds = join(repo, 'fixtures/pci.ids');

function main() {
  const { values } = parseArgs({
    options: {
      check: { type: 'boolean', default: false },
      'generate-large': { type: 'string' },
      devices: { type: 'string', default: '300' },
      'hosts-dir': { type: 'string' },
    },
  });
  const hostsDir = resolve(values['hosts-dir'] ?? join(repo, 'fixtures/hosts'));

  if (values['generate-large'] !== undefined) {
    const total = Number(values.devices);
    if (!Number.isInteger(total) || total <= 0)
      fail(`--devices must be a positive integer, got "${values.devices}"`);
    const dir = resolve(values['generate-large']);
    const host = largeHost(total);
    checkCoverage('large', host);
    clearOwnFolder(dir);
    const { pciCount } = buildHost(dir, host, { pciIds, name: 'large' });
    console.log(`generated ${dir}: ${pciCount} PCI functions, ${host.usb.devices.length} USB devices`);
    return;
  }

  for (const [name, host] of Object.entries(HOSTS)) checkCoverage(name, host);

  if (values.check) {
    const tmp = mkdtempSync(join(tmpdir(), 'qemu-hook-fixtures-'));
    try {
      let problems = 0;
      for (const [name, host] of Object.entries(HOSTS)) {
        buildHost(join(tmp, name), host, { pciIds, name });
        const diffs = diffTrees(join(hostsDir, name), join(tmp, name));
        for (const d of diffs.slice(0, 20)) console.error(`${name}/${d}`);
        if (diffs.length > 20) console.error(`${name}: … and ${diffs.length - 20} more differences`);
        problems += diffs.length;
      }
      if (problems > 0) {
        console.error(`fixtures differ from their descriptions: run node scripts/make-fixtures.mjs`);
        process.exitCode = 1;
      } else {
        console.log(`fixtures up to date (${Object.keys(HOSTS).length} hosts)`);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    return;
  }

  for (const [name, host] of Object.entries(HOSTS)) {
    const dir = join(hostsDir, name);
    clearOwnFolder(dir);
    const { pciCount } = buildHost(dir, host, { pciIds, name });
    console.log(`${name}: ${pciCount} PCI functions`);
  }
}

/** Deletes a folder only when it is empty or was made by this script. */
function clearOwnFolder(dir) {
  if (!existsSync(dir)) return;
  if (readdirSync(dir).length > 0 && !existsSync(join(dir, MARK))) {
    fail(`${dir} is not empty and was not made by this script; refusing to delete it`);
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Every vendor, device and subsystem vendor used by a host must have a line in fixtures/pci.ids. */
function checkCoverage(name, host) {
  const known = new Set();
  let vendor = null;
  for (const line of readFileSync(pciIds, 'utf8').split('\n')) {
    if (line.startsWith('C ')) break;
    const v = /^([0-9a-f]{4}) {2}/.exec(line);
    if (v) {
      vendor = v[1];
      known.add(vendor);
      continue;
    }
    const d = /^\t([0-9a-f]{4}) {2}/.exec(line);
    if (d && vendor) known.add(`${vendor}:${d[1]}`);
  }
  const missing = new Set();
  for (const d of host.pci) {
    const [v] = d.id.split(':');
    const [sv] = (d.sub ?? '0000:0000').split(':');
    for (const key of [v, d.id, sv])
      if (key !== '0000' && !known.has(key)) missing.add(`${key} (${fullAddr(d.addr)})`);
  }
  if (missing.size > 0) fail(`${name}: fixtures/pci.ids lacks ${[...missing].join(', ')}`);
}

function fail(message) {
  console.error(`make-fixtures: ${message}`);
  process.exit(2);
}

main();
