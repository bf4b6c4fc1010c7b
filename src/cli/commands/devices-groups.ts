import { loadConfigFile } from '../../config/load.js';
import type { Inventory } from '../../model/device.js';
import { loadState } from '../../state/file.js';
import type { CliContext } from '../context.js';
import { stateFileOf } from '../context.js';
import { iommuGroups, memberName } from '../device-groups.js';
import { EXIT } from '../exit.js';
import { table } from '../table.js';

/** `qemu-hook devices --groups`: the IOMMU groups, what is in each, who claims it, whether it can go. */
export async function devicesGroups(ctx: CliContext, inv: Inventory): Promise<number> {
  // Claims need the config; the view is still worth having without one (or with a broken one).
  const loaded = await loadConfigFile(ctx.paths.configFile).catch(() => null);
  const config = loaded?.config ?? null;
  const state = await loadState(stateFileOf(ctx, config), { readOnly: true }).catch(() => null);
  const { groups, ungrouped } = iommuGroups(inv, config, state?.records ?? []);
  if (ctx.args.json) {
    ctx.out(
      JSON.stringify(
        {
          config: config ? ctx.paths.configFile : null,
          groups: groups.map((g) => ({
            group: g.group,
            usable: g.usable,
            claimedBy: g.claimedBy,
            verdict: g.verdict,
            members: g.members.map((m) => ({
              address: m.device.address.toString(),
              class: m.device.classCode,
              vendor: m.device.vendor,
              device: m.device.device,
              name: memberName(m, inv),
              driver: m.device.driver,
              bridge: m.bridge,
              claims: m.claims,
              heldBy: m.heldBy,
            })),
          })),
          ungrouped: ungrouped.map((d) => d.address.toString()),
        },
        null,
        2,
      ),
    );
    return EXIT.ok;
  }
  if (!config)
    ctx.err(
      `note: ${loaded ? `${ctx.paths.configFile} has problems (qemu-hook check shows them)` : `no config at ${ctx.paths.configFile}`}: claims not shown`,
    );
  if (groups.length === 0) {
    ctx.out('no IOMMU groups: the IOMMU is not active on this host, so no device can be passed through');
    return EXIT.ok;
  }
  for (const g of groups) {
    ctx.out(`IOMMU group ${g.group}: ${g.verdict}`);
    for (const line of table(
      ['ADDRESS', 'IDS', 'DRIVER', 'CLAIMED BY', 'NAME'],
      g.members.map((m) => [
        m.device.address.toString(),
        `${m.device.vendor}:${m.device.device}`,
        m.device.driver ?? '-',
        [
          ...m.claims.map((c) => `${c.domain}/${c.entry}`),
          ...(m.heldBy ? [`(held by ${m.heldBy})`] : []),
        ].join(',') || (m.bridge ? '(bridge)' : '-'),
        memberName(m, inv),
      ]),
    ))
      ctx.out(line);
  }
  if (ungrouped.length > 0)
    ctx.out(`not in any IOMMU group: ${ungrouped.map((d) => d.address.toString()).join(', ')}`);
  return EXIT.ok;
}
