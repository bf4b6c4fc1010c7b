import type { HandoverConfig } from '../config/model.js';
import type { Inventory } from '../model/device.js';
import {
  type GpuHolder,
  type HandoverPlan,
  type HandoverSnapshot,
  type HandoverStep,
  type HandoverTarget,
  KNOWN_GPU_DAEMONS,
  type LoginSession,
  NEVER_STOPPED,
} from '../model/handover.js';
import type { PlannedDevice } from '../model/plan.js';

// The single-GPU hand-over as data: from a snapshot of the host and the domain's `handover`
// config, the ordered steps that take the GPU away from the desktop. Pure: reads and writes nothing.
// Order (each step only when the snapshot says it applies):
//   stop services (configured, and system units holding the GPU) → end graphical sessions (their
//   user units first, while the user manager is up) → stop the display manager → wait until no
//   process holds the GPU's nodes → unbind fbcon → release the firmware framebuffer → unload modules.
// The device detach (plan/prepare.ts) follows.

/** Session types that draw on a GPU. */
const GRAPHICAL = new Set(['wayland', 'x11', 'mir']);

/** The seat a GPU belongs to unless udev says otherwise: the only one on a single-GPU host. */
const SEAT = 'seat0';

export function planHandover(snapshot: HandoverSnapshot, config: HandoverConfig): HandoverPlan {
  const errors: string[] = [];
  const warnings = [...snapshot.warnings];
  const steps: Omit<HandoverStep, 'step'>[] = [];
  const t = config.timeoutMs;
  const active = new Map(snapshot.services.map((s) => [s.unit, s.active]));
  const dm = snapshot.displayManager;

  // 1. Services: the configured ones, then known GPU daemons that hold the GPU. Other system units
  // holding it are not stopped unasked: the wait for holders names them.
  const systemHolders = snapshot.holders.filter((h) => h.unit && !h.userManager && !h.session && h.pid !== 1);
  const holderUnits = systemHolders.map((h) => h.unit!).filter((u) => KNOWN_GPU_DAEMONS.has(u));
  const wanted = unique([...config.services, ...holderUnits]).filter((u) => u !== dm);
  for (const unit of unique(systemHolders.map((h) => h.unit!)))
    if (!wanted.includes(unit) && unit !== dm && !NEVER_STOPPED.has(unit))
      warnings.push(
        `${unit} holds the GPU and is not stopped by the hand-over: list it in handover.services to stop it for the VM and start it again after`,
      );
  for (const unit of wanted) {
    if (NEVER_STOPPED.has(unit)) {
      warnings.push(`${unit} holds the GPU but is never stopped (libvirt runs through it)`);
      continue;
    }
    if (!active.get(unit)) continue;
    const holding = holdersIn(snapshot.holders, (h) => h.unit === unit && !h.userManager);
    steps.push(
      stopService(
        unit,
        config.services.includes(unit)
          ? `listed in handover.services and active${holding ? `; holds the GPU (${holding})` : ''}`
          : `active and holds the GPU (${holding})`,
        t,
      ),
    );
  }

  // 2. Graphical sessions on the GPU's seat, and any session whose processes hold the GPU.
  for (const s of sessionsToEnd(snapshot)) {
    const userUnits = unique(
      snapshot.holders
        .filter((h) => h.userManager && h.userManager === `user@${s.uid}.service` && h.unit)
        .map((h) => h.unit!),
    );
    const holding = holdersIn(
      snapshot.holders,
      (h) => h.session === s.id || userUnits.includes(h.unit ?? ''),
    );
    steps.push({
      kind: 'end-session',
      target: `session ${s.id} (${s.user}, ${s.type}${s.seat ? ` on ${s.seat}` : ''})`,
      action: `${userUnits.length > 0 ? `stop ${s.user}'s ${userUnits.join(', ')}, then ` : ''}terminate session ${s.id}`,
      why: `${GRAPHICAL.has(s.type) ? `a ${s.type} session` : 'a session'}${holding ? ` holding the GPU (${holding})` : ` on ${SEAT}`}`,
      verify: `logind no longer lists session ${s.id}`,
      timeoutMs: t,
      inverse: null,
      data: { kind: 'end-session', session: s.id, user: s.user, userUnits },
    });
  }

  // 3. The display manager, once its sessions are gone.
  if (dm && active.get(dm)) {
    const holding = holdersIn(snapshot.holders, (h) => h.unit === dm);
    steps.push(stopService(dm, `display manager, active${holding ? `; holds the GPU (${holding})` : ''}`, t));
  } else if (dm === null && snapshot.holders.length > 0) {
    warnings.push('no display-manager.service: graphical sessions are ended through logind only');
  }

  // 4. Nobody may hold the card when it is unbound: that is what makes unbind block.
  if (snapshot.nodes.length > 0) {
    const now = snapshot.holders;
    steps.push({
      kind: 'wait-holders',
      target: snapshot.nodes.map((n) => n.path).join(', '),
      action:
        config.holders === 'refuse'
          ? 'wait until no process holds these nodes'
          : `wait until no process holds these nodes; at half the timeout send SIGTERM${config.holders === 'kill' ? ', then SIGKILL' : ''} to those left (never PID 1 or libvirt)`,
      why:
        now.length > 0
          ? `held now by ${now.map(holderText).join('; ')}`
          : 'no process holds them now; checked again after the stops',
      verify: 'no process has them open or mapped (/proc/<pid>/fd, maps)',
      timeoutMs: t,
      inverse: null,
      data: { kind: 'wait-holders', nodes: snapshot.nodes, policy: config.holders },
    });
  }

  // 5. fbcon, when it draws on this GPU (its own fb, or a firmware fb on its memory).
  const ownFbs = snapshot.framebuffers.filter((f) => f.device && snapshot.functions.includes(f.device));
  const firmware = snapshot.firmwareFramebuffers.filter((f) => f.onGpuBy !== null);
  const fbsHere = [...ownFbs.map((f) => `${f.name} ${f.id}`), ...firmware.map((f) => f.device)];
  if (fbsHere.length > 0) {
    for (const v of snapshot.vtcons.filter((c) => isFbcon(c.name) && c.bound)) {
      steps.push({
        kind: 'unbind-vtcon',
        target: `${v.vtcon} "${v.name}"`,
        action: `write 0 to /sys/class/vtconsole/${v.vtcon}/bind`,
        why: `fbcon is bound and draws on ${fbsHere.join(', ')}`,
        verify: `the vtcon named "${v.name}" is unbound or gone (it leaves with the last fb)`,
        timeoutMs: t,
        inverse: `bind the vtcon named "${v.name}" again once its fb is back (found by name, not number)`,
        data: { kind: 'unbind-vtcon', name: v.name },
      });
    }
  }

  // 6. A firmware framebuffer still on the GPU's memory (the native driver did not take it over).
  for (const f of firmware) {
    if (!f.driver) continue;
    steps.push({
      kind: 'release-firmware-fb',
      target: f.device,
      action: `unbind ${f.device} from ${f.driver}`,
      why: `still registered on this GPU (${f.onGpuBy === 'parent' ? 'its sysfs parent' : f.onGpuBy === 'iomem' ? 'its memory lies in a BAR of the GPU, /proc/iomem' : 'the GPU is the boot VGA device'})`,
      verify: `${f.device} has no driver (gone counts as done: ENODEV)`,
      timeoutMs: t,
      inverse: `bind ${f.device} to ${f.driver} again, unless the native driver took it over (ENODEV)`,
      data: { kind: 'release-firmware-fb', device: f.device, driver: f.driver },
    });
  }

  // 7. Modules, in the order given, when loaded.
  for (const name of config.modules) {
    const m = snapshot.modules.find((x) => x.name === name);
    if (!m?.loaded) continue;
    if (m.builtin) {
      errors.push(
        `handover.modules: ${name} is built into the kernel and cannot be unloaded: remove it from handover.modules`,
      );
      continue;
    }
    const params = Object.entries(m.parameters);
    steps.push({
      kind: 'unload-module',
      target: name,
      action: `unload ${name} (delete_module, not its dependencies)`,
      why: `loaded, refcnt ${m.refcnt ?? '?'}${m.holders.length > 0 ? `, used by ${m.holders.join(', ')}` : ''}`,
      verify: `/sys/module/${name} is gone (unloads once its refcnt is 0)`,
      timeoutMs: t,
      inverse: `modprobe ${name}${params.length > 0 ? ` with ${params.length} saved parameter${params.length > 1 ? 's' : ''}` : ''}`,
      data: { kind: 'unload-module', module: name, parameters: m.parameters },
    });
  }

  return { steps: steps.map((s, i) => ({ step: i + 1, ...s })), errors, warnings };
}

/** fbcon's vtcon is named "(M) frame buffer device" ((S) when it is the system driver). */
export function isFbcon(name: string): boolean {
  return /frame buffer device/i.test(name);
}

/** The give-back of a recorded step, in words (for `--simulate … release` and status). */
export function inverseText(data: HandoverTarget): string | null {
  switch (data.kind) {
    case 'stop-service':
      return `start ${data.unit}`;
    case 'unbind-vtcon':
      return `bind the vtcon named "${data.name}"`;
    case 'release-firmware-fb':
      return `bind ${data.device} to ${data.driver} (ENODEV: the native driver has it)`;
    case 'unload-module': {
      const p = Object.entries(data.parameters)
        .filter(([, v]) => passable(v))
        .map(([k, v]) => `${k}=${v}`);
      return `modprobe ${data.module}${p.length > 0 ? ` ${p.join(' ')}` : ''}`;
    }
    case 'end-session':
    case 'wait-holders':
      return null;
  }
}

/** Whether a step's give-back has anything to do: records of the others are dropped once done. */
export function hasInverse(data: HandoverTarget): boolean {
  return inverseText(data) !== null;
}

/** Parameter values that modprobe takes back as they read: no "(null)", nothing empty or spaced. */
export function passable(value: string): boolean {
  return value !== '' && value !== '(null)' && !/\s/.test(value);
}

function sessionsToEnd(snapshot: HandoverSnapshot): LoginSession[] {
  const holding = new Set(snapshot.holders.map((h) => h.session).filter((s): s is string => s !== null));
  const users = new Set(snapshot.holders.map((h) => h.userManager).filter((u): u is string => u !== null));
  return snapshot.sessions.filter(
    (s) =>
      holding.has(s.id) || (GRAPHICAL.has(s.type) && (s.seat === SEAT || users.has(`user@${s.uid}.service`))),
  );
}

function stopService(unit: string, why: string, timeoutMs: number): Omit<HandoverStep, 'step'> {
  return {
    kind: 'stop-service',
    target: unit,
    action: `stop ${unit}`,
    why,
    verify: `${unit} is inactive`,
    timeoutMs,
    inverse: `start ${unit}`,
    data: { kind: 'stop-service', unit },
  };
}

export function holderText(h: GpuHolder): string {
  const where = h.session ? `session ${h.session}` : (h.unit ?? 'no unit');
  return `pid ${h.pid} ${h.command} (${where})`;
}

function holdersIn(holders: readonly GpuHolder[], pick: (h: GpuHolder) => boolean): string {
  return holders
    .filter(pick)
    .map((h) => `pid ${h.pid} ${h.command}`)
    .join(', ');
}

function unique<T>(xs: readonly T[]): T[] {
  return [...new Set(xs)];
}

/**
 * The functions of the GPUs a plan takes: every planned PCI function in the slot of a display
 * controller (class 03), so the HDMI audio function's nodes count too. Empty when no GPU is taken.
 */
export function gpuFunctions(devices: readonly PlannedDevice[], inventory: Inventory): string[] {
  const pci = devices.filter((d) => d.address && d.type === 'pci');
  const display = pci.filter((d) =>
    inventory.pci.some((p) => p.address.toString() === d.address && p.classCode.startsWith('03')),
  );
  const slots = new Set(display.map((d) => d.address!.slice(0, -2)));
  return pci.filter((d) => slots.has(d.address!.slice(0, -2))).map((d) => d.address!);
}

/**
 * Without `handover`, a GPU whose nodes a logged-in user's session holds is refused: its unbind
 * would block (or crash the compositor). Names the holders and the key that hands it over.
 */
export function sessionHoldersError(holders: readonly GpuHolder[]): string | null {
  const graphical = holders.filter((h) => h.session !== null || h.userManager !== null);
  if (graphical.length === 0) return null;
  return `the GPU's nodes are held by a graphical session (${graphical.map(holderText).join('; ')}): add handover: {} to the domain to hand it over from the desktop and back, or end the session first`;
}
