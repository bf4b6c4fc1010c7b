// The single-GPU hand-over: what the host looks like around a GPU (a snapshot, read from
// sysfs/proc and the service manager) and the steps that hand it from the desktop to a VM.

/** Units a hand-over never stops: libvirt is starting the VM through them (init.scope is PID 1). */
export const NEVER_STOPPED: ReadonlySet<string> = new Set([
  'libvirtd.service',
  'virtqemud.service',
  'virtlogd.service',
  'init.scope',
]);

/**
 * Daemons that exist only to hold a GPU: stopped (and started again after) when they are active and
 * hold it, without being listed. Any other system unit holding the GPU is left running (it may be
 * what started this VM, or a job the user would not want stopped): its processes are holders the
 * hand-over waits for, and the refusal names the unit to list in `handover.services`.
 */
export const KNOWN_GPU_DAEMONS: ReadonlySet<string> = new Set([
  'nvidia-persistenced.service',
  'nvidia-powerd.service',
]);

/** Modules a hand-over never unloads: the DRM core (often built in) and the sound core of other cards. */
export const NEVER_UNLOADED: ReadonlySet<string> = new Set(['drm', 'drm_kms_helper', 'snd_hda_intel']);

/** A device node of the GPU: a `/dev` path and, when the kernel gives one, its "major:minor". */
export interface GpuNode {
  readonly path: string;
  /** "226:0"; null for nodes known by path only (/dev/nvidia*). */
  readonly rdev: string | null;
  /** The PCI function it belongs to. */
  readonly function: string;
}

/** A process holding one of the GPU's nodes open or mapped. */
export interface GpuHolder {
  readonly pid: number;
  readonly command: string;
  /** The systemd unit from /proc/<pid>/cgroup ("gdm.service", "org.gnome.Shell@wayland.service"). */
  readonly unit: string | null;
  /** Set for a user unit: the user manager it runs under ("user@1000.service"). */
  readonly userManager: string | null;
  /** The logind session from a "session-N.scope" cgroup. */
  readonly session: string | null;
  /** Which of the GPU's nodes it holds. */
  readonly nodes: readonly string[];
}

export interface Framebuffer {
  /** "fb0". */
  readonly name: string;
  /** /proc/fb's name ("amdgpudrmfb", "EFI VGA"). */
  readonly id: string;
  /** The PCI function or platform device the fb belongs to. */
  readonly device: string | null;
}

/** A firmware framebuffer platform device (efi-framebuffer.0, simple-framebuffer.0, vesa-framebuffer.0). */
export interface FirmwareFramebuffer {
  readonly device: string;
  /** Bound platform driver ("efi-framebuffer", "simple-framebuffer", "simpledrm"), null when none. */
  readonly driver: string | null;
  /** How we know it sits on this GPU: its sysfs parent, its memory inside a BAR (/proc/iomem), or boot_vga. */
  readonly onGpuBy: 'parent' | 'iomem' | 'boot-vga' | null;
}

export interface VirtualConsole {
  /** "vtcon1": changes between boots and when fbcon re-registers; never used to find one again. */
  readonly vtcon: string;
  /** "(M) frame buffer device": how a vtcon is found again. */
  readonly name: string;
  readonly bound: boolean;
}

export interface KernelModule {
  readonly name: string;
  readonly loaded: boolean;
  /** Built into the kernel: never unloaded (it cannot be). */
  readonly builtin: boolean;
  /** null when unknown (built-in or absent). */
  readonly refcnt: number | null;
  readonly holders: readonly string[];
  /** Readable parameters, as /sys/module/<m>/parameters shows them. */
  readonly parameters: Readonly<Record<string, string>>;
}

export interface ServiceState {
  readonly unit: string;
  readonly active: boolean;
}

export interface LoginSession {
  readonly id: string;
  readonly user: string;
  readonly uid: number;
  readonly seat: string | null;
  /** "wayland", "x11", "tty", "mir", "unspecified". */
  readonly type: string;
}

/** Everything the hand-over planner needs, read once before the first write. */
export interface HandoverSnapshot {
  /** The GPU's PCI functions (VGA and audio). */
  readonly functions: readonly string[];
  readonly bootVga: boolean;
  /** Driver bound to each function now. */
  readonly drivers: Readonly<Record<string, string | null>>;
  readonly nodes: readonly GpuNode[];
  readonly framebuffers: readonly Framebuffer[];
  readonly firmwareFramebuffers: readonly FirmwareFramebuffer[];
  readonly vtcons: readonly VirtualConsole[];
  readonly holders: readonly GpuHolder[];
  readonly modules: readonly KernelModule[];
  /** The unit display-manager.service points at ("gdm.service"), null when none. */
  readonly displayManager: string | null;
  /** Active state of the display manager, the configured services and the holders' system units. */
  readonly services: readonly ServiceState[];
  readonly sessions: readonly LoginSession[];
  /** Problems met while reading: the plan shows them. */
  readonly warnings: readonly string[];
}

export type HandoverStepKind =
  | 'stop-service'
  | 'end-session'
  | 'wait-holders'
  | 'unbind-vtcon'
  | 'release-firmware-fb'
  | 'unload-module';

export type HolderPolicy = 'refuse' | 'term' | 'kill';

/** What each kind needs to act and to undo; written to the state file before it acts. */
export type HandoverTarget =
  | { readonly kind: 'stop-service'; readonly unit: string }
  | {
      readonly kind: 'end-session';
      readonly session: string;
      readonly user: string;
      /** User units to stop first, while the user manager is up ("plasma-kwin_wayland.service"). */
      readonly userUnits: readonly string[];
    }
  | {
      readonly kind: 'wait-holders';
      readonly nodes: readonly GpuNode[];
      readonly policy: HolderPolicy;
    }
  | { readonly kind: 'unbind-vtcon'; readonly name: string }
  | { readonly kind: 'release-firmware-fb'; readonly device: string; readonly driver: string }
  | {
      readonly kind: 'unload-module';
      readonly module: string;
      readonly parameters: Readonly<Record<string, string>>;
    };

/** One hand-over step, as data: the executor carries it out, `--simulate` shows it. */
export interface HandoverStep {
  /** 1-based position in the hand-over. */
  readonly step: number;
  readonly kind: HandoverStepKind;
  /** What it acts on, in words ("nvidia-persistenced.service", "fbcon (M) frame buffer device"). */
  readonly target: string;
  /** What it does. */
  readonly action: string;
  /** Why it applies, from the snapshot. */
  readonly why: string;
  /** The condition polled until it holds or the timeout passes. */
  readonly verify: string;
  readonly timeoutMs: number;
  /** What the give-back does; null when nothing needs undoing. */
  readonly inverse: string | null;
  readonly data: HandoverTarget;
}

export interface HandoverPlan {
  readonly steps: readonly HandoverStep[];
  /** Reasons the hand-over cannot start (a module that is built in, nothing to hand over…). */
  readonly errors: readonly string[];
  readonly warnings: readonly string[];
}
