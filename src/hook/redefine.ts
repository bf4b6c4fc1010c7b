import type { DomainConfig } from '../config/model.js';
import type { Inventory } from '../model/device.js';
import type { DefinitionStore } from '../model/ports.js';
import { planStart } from '../plan/prepare.js';
import type { StateRecord } from '../state/schema.js';
import type { HookLogger } from './logger.js';

export interface RedefineDeps {
  readonly store: DefinitionStore;
  /** Start the domain (virDomainCreate); only with onAddressChange: restart. */
  readonly start: (domain: string) => Promise<void>;
  readonly readHost: () => Promise<{ inventory: Inventory; records: readonly StateRecord[] }>;
  readonly log: HookLogger;
}

export interface RedefineOutcome {
  readonly outcome: 'redefined' | 'restarted' | 'unchanged' | 'running' | 'undefined' | 'refused';
  /** Why, when refused. */
  readonly detail?: string;
}

const outcome = (o: RedefineOutcome['outcome'], detail?: string): RedefineOutcome => ({
  outcome: o,
  ...(detail ? { detail } : {}),
});

/**
 * What the detached helper does after a start was refused for a stale definition. Its first call
 * about the domain waits until libvirt has finished the failed start (the domain's job is held
 * until then), so no polling is needed. It re-reads everything: if the domain was started by hand
 * or fixed by `qemu-hook apply` meanwhile, it does nothing.
 */
export async function redefineAfterRefusal(
  domain: string,
  config: DomainConfig,
  restart: boolean,
  deps: RedefineDeps,
): Promise<RedefineOutcome> {
  const { log } = deps;
  if (await deps.store.isActive(domain)) {
    log.warn({ domain }, 'redefine: the domain is running now (started meanwhile?): left alone');
    return outcome('running');
  }
  const found = await deps.store.persistentXml(domain);
  if (!found) {
    log.warn({ domain }, 'redefine: the domain is no longer defined: nothing to do');
    return outcome('undefined');
  }
  const host = await deps.readHost();
  const input = { domain, config, ...host };
  const plan = planStart({ ...input, definition: found });
  if (!plan.definition.changed || !plan.definition.xml) {
    log.info({ domain }, 'redefine: definition already in step: nothing to do');
    return outcome('unchanged');
  }
  const after = planStart({ ...input, definition: { xml: plan.definition.xml, source: 'corrected' } });
  if (!after.ok) {
    log.error(
      { domain, errors: after.errors },
      'redefine: the corrected definition would be refused too: not written',
    );
    return outcome('refused', after.errors.join('; '));
  }
  // Check once more right before writing: a start by hand may have slipped in while we planned.
  if (await deps.store.isActive(domain)) {
    log.warn({ domain }, 'redefine: the domain started meanwhile: left alone');
    return outcome('running');
  }
  await deps.store.define(domain, plan.definition.xml);
  log.info({ domain, diff: plan.definition.diff }, 'redefine: definition updated');
  if (!restart) return outcome('redefined');
  await deps.start(domain);
  log.info({ domain }, 'redefine: domain started again');
  return outcome('restarted');
}
