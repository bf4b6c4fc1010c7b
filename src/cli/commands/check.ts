import { loadConfigFile } from '../../config/load.js';
import { resolvePci } from '../../match/pci.js';
import { resolveUsb } from '../../match/usb.js';
import type { Inventory } from '../../model/device.js';
import { errorMessage } from '../../model/errors.js';
import type { CliContext } from '../context.js';
import { EXIT } from '../exit.js';
import { inventoryReader } from '../wiring.js';

/**
 * `qemu-hook check`: every config problem at once, each with its path (exit 2); then, where the
 * host can be read, how each entry resolves now (exit 1 when one does not).
 */
export async function check(ctx: CliContext): Promise<number> {
  const file = ctx.paths.configFile;
  const r = await loadConfigFile(file);
  for (const w of r.warnings) ctx.err(`warning: ${w}`);
  if (!r.config) {
    ctx.err(`${file}: ${r.errors.length} problem${r.errors.length === 1 ? '' : 's'}`);
    for (const e of r.errors) ctx.err(`  ${e}`);
    return EXIT.usage;
  }
  ctx.out(`${file}: valid, ${r.config.domains.size} domain${r.config.domains.size === 1 ? '' : 's'}`);
  let inventory: Inventory;
  try {
    inventory = await inventoryReader(ctx).read();
  } catch (err) {
    ctx.err(`note: cannot read the host's devices (${errorMessage(err)}); entries not resolved`);
    return EXIT.ok;
  }
  let unresolved = 0;
  for (const [name, d] of r.config.domains) {
    ctx.out(`${name}:`);
    for (const e of d.devices) {
      if (e.type === 'sriov') {
        ctx.out(`  ${e.name}: sriov, a VF of ${e.tiers.map((t) => t.pf).join(' or ')} (chosen at start)`);
        continue;
      }
      const res = e.type === 'pci' ? resolvePci(e, inventory) : resolveUsb(e, inventory);
      if (res.ok) {
        const what = res.devices
          .map((x) => ('address' in x ? x.address.toString() : `${x.vendor}:${x.product}@${x.port}`))
          .join(', ');
        ctx.out(`  ${e.name}: ${what} (by ${res.criteria})`);
      } else {
        unresolved++;
        ctx.out(`  ${res.reason}`);
      }
    }
  }
  return unresolved > 0 ? EXIT.refused : EXIT.ok;
}
