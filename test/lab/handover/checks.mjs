// The hand-over checks of issue 9, run inside the hand-over lab guest as root by
// lab-handover.service (systemd is PID 1), after install.sh --no-build put qemu-hook in place as
// libvirtd's real hook. The guest's only GPU is QEMU's standard VGA at 00:01.0: efifb drove it at
// boot, bochs-drm took it over, fbcon sits on bochs-drmdrmfb, the stand-in display manager
// (display-manager.service -> fake-dm.service) holds /dev/dri/card0 and /dev/fb0 with tty1 in
// KD_GRAPHICS, and gpu-daemon.service holds card0. Every sysfs write is to the guest's devices.
//
// One line per check: `LAB PASS: <id> …` or `LAB FAIL: <id> …: <what went wrong>`, detail lines
// `LAB   <id> …` before it; the tally goes to /run/lab-counts for run.sh.
//
// K checks are kernel facts the hand-over relies on (they need no hand-over code); H checks go
// through libvirt and the installed hook, and their titles contain "hand-over".
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename } from 'node:path';

const VGA = '0000:00:01.0';
const DM = 'display-manager.service'; // an alias of fake-dm.service, as gdm3/sddm are aliased
const DAEMON = 'gpu-daemon.service';
const DOMAIN = 'gpu-vm';
const CONFIG = '/etc/qemu-hook/config.yaml';
const FAULTS = '/etc/qemu-hook/fault-injection';
const HOOK_LOG = '/var/log/libvirt/qemu-hook.log';
const HOOK = '/etc/libvirt/hooks/qemu';
const STATE = '/var/lib/qemu-hook/state.json';
const HOLDER = '/lab/handover/holder';
const BOOT_FB = '/run/lab/boot-fb.txt';
// where a kill lands in the crash check: after the vtcon step acted, with both services stopped
const CRASH_POINT = process.env.LAB_HANDOVER_CRASH ?? 'handover-unbind-vtcon';

// ------------------------------------------------------------------------------------ helpers
const sleepCell = new Int32Array(new SharedArrayBuffer(4));
const sleep = (ms) => Atomics.wait(sleepCell, 0, 0, ms);
const uptime = () => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);

function run(cmd, args, { timeoutSec = 180 } = {}) {
  const r = spawnSync(cmd, args, {
    input: '',
    encoding: 'utf8',
    timeout: timeoutSec * 1000,
    killSignal: 'SIGKILL',
  });
  const out = (r.stdout ?? '').trim();
  const err = (r.stderr ?? '').trim();
  return { status: r.status, signal: r.signal, out, err, text: `${out}\n${err}`.trim() };
}
const virsh = (...args) => run('virsh', ['-q', '-c', 'qemu:///system', ...args]);
const qemuHook = (...args) => run('/usr/local/bin/qemu-hook', args);
const oneLine = (s, n = 300) => s.replace(/\s+/g, ' ').trim().slice(0, n);
const read = (p) => {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return '';
  }
};
const link = (p) => {
  try {
    return readlinkSync(p);
  } catch {
    return null;
  }
};
function waitFor(pred, seconds, stepMs = 250) {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    if (pred()) return true;
    if (Date.now() > end) return false;
    sleep(stepMs);
  }
}

const dev = `/sys/bus/pci/devices/${VGA}`;
const driver = () => basename(link(`${dev}/driver`) ?? 'none');
const group = () => basename(link(`${dev}/iommu_group`) ?? '?');

/** `systemctl show`: the unit's real name, state and main process. */
function unit(name) {
  const r = run('systemctl', ['show', '-p', 'Id,ActiveState,MainPID', name]);
  const f = Object.fromEntries(
    r.out.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  return { id: f.Id ?? name, active: f.ActiveState ?? '?', pid: Number(f.MainPID ?? 0) };
}
/** Device nodes the process has open (its fds, resolved). */
function openNodes(pid) {
  if (!pid) return [];
  try {
    return readdirSync(`/proc/${pid}/fd`)
      .map((fd) => link(`/proc/${pid}/fd/${fd}`))
      .filter((p) => p?.startsWith('/dev/'));
  } catch {
    return [];
  }
}
/** Every process with `path` open: pid, command, and its unit from /proc/<pid>/cgroup. */
function holdersOf(path) {
  const out = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    if (!openNodes(pid).includes(path)) continue;
    const cg = read(`/proc/${pid}/cgroup`).trim().split('/').pop();
    out.push(`${pid} ${read(`/proc/${pid}/comm`).trim()} (${cg})`);
  }
  return out;
}
/** vtcons by name, never by number: [{ vt, name, bound }] */
function vtcons() {
  return readdirSync('/sys/class/vtconsole').map((vt) => ({
    vt,
    name: read(`/sys/class/vtconsole/${vt}/name`).trim(),
    bound: read(`/sys/class/vtconsole/${vt}/bind`).trim() === '1',
  }));
}
const fbconBound = () => vtcons().some((v) => v.name.includes('frame buffer') && v.bound);
const describeVtcons = () =>
  vtcons()
    .map((v) => `${v.vt} "${v.name}" bind=${v.bound ? 1 : 0}`)
    .join(', ');
const procFb = () => read('/proc/fb').trim().replace(/\n/g, '; ') || '(empty)';
const fb0OnVga = () => basename(link('/sys/class/graphics/fb0/device') ?? '') === VGA;
function qemuHolds(g) {
  const pid = read(`/run/libvirt/qemu/${DOMAIN}.pid`).trim();
  return pid !== '' && openNodes(pid).includes(`/dev/vfio/${g}`);
}

function status() {
  const r = qemuHook('status', '--json');
  if (r.status !== 0) throw new Error(`qemu-hook status --json exited ${r.status}: ${oneLine(r.text)}`);
  return JSON.parse(r.out);
}
/** The state file itself: device records and hand-over step records (`handovers`). */
function stateRecords() {
  const text = read(STATE);
  if (text === '') return { records: [], handovers: [] };
  const st = JSON.parse(text);
  return { records: st.records ?? [], handovers: st.handovers ?? [] };
}
const describeState = (st) =>
  [
    ...st.records.map((r) => `${r.address} ${r.phase}`),
    ...st.handovers.map((h) => `step ${h.step} ${h.data?.kind ?? '?'} ${h.target} ${h.phase}`),
  ].join(', ') || 'empty';

function writeConfig(handover) {
  writeFileSync(
    CONFIG,
    `# written by the lab (test/lab/handover/checks.mjs)
domains:
  ${DOMAIN}:
    devices: [{ name: gpu, match: { class: "0300" }, functions: all }]   # the guest's only GPU
${handover ? `    handover: ${handover}\n` : ''}libvirt: { uri: "qemu:///system" }
stateFile: ${STATE}
log: { level: debug, file: ${HOOK_LOG} }
`,
  );
}
const HANDOVER = `{ services: [${DAEMON}], timeout: 15 }`;

/** The hook's own timing lines (pino JSON) written after `from` (a byte offset of its log). */
function hookLines(from) {
  return read(HOOK_LOG)
    .slice(from)
    .split('\n')
    .flatMap((l) => {
      try {
        const o = JSON.parse(l);
        // the log writes ISO times (older builds: epoch ms)
        return [{ ...o, time: typeof o.time === 'string' ? Date.parse(o.time) : o.time }];
      } catch {
        return [];
      }
    });
}
const logSize = () => (existsSync(HOOK_LOG) ? statSync(HOOK_LOG).size : 0);
const secs = (ms) => (Number(ms) / 1000).toFixed(2);

// ------------------------------------------------------------------------------------ reporting
let passed = 0;
let failed = 0;
class Check {
  constructor(id, title) {
    this.id = id;
    this.title = title;
    this.problems = [];
    this.t0 = uptime();
  }
  expect(ok, problem) {
    if (!ok) this.problems.push(problem);
    return Boolean(ok);
  }
  note(s) {
    console.log(`LAB   ${this.id} ${s}`);
  }
  end() {
    const s = (uptime() - this.t0).toFixed(1);
    if (this.problems.length === 0) {
      passed++;
      console.log(`LAB PASS: ${this.id} ${this.title} (${s}s)`);
    } else {
      failed++;
      console.log(`LAB FAIL: ${this.id} ${this.title} (${s}s): ${this.problems.join('; ')}`);
      for (const l of read(HOOK_LOG).trimEnd().split('\n').slice(-20))
        console.log(`LAB   ${this.id} hook.log| ${l.slice(0, 400)}`);
    }
  }
}
/** Runs a check, then (unless the next check needs the domain running) puts the desktop back so
 *  that one failure does not fail the checks after it. */
function step(id, title, fn, { keepRunning = false } = {}) {
  const c = new Check(id, title);
  try {
    fn(c);
  } catch (err) {
    c.problems.push(`stopped: ${err.message}`);
  }
  c.end();
  rmSync(FAULTS, { force: true });
  if (keepRunning) return;
  if (existsSync(`/run/libvirt/qemu/${DOMAIN}.pid`)) virsh('destroy', DOMAIN);
  if (desktopProblems().length === 0) return;
  const r = qemuHook('recover');
  console.log(`LAB   ${id} cleanup: qemu-hook recover -> ${r.status}: ${oneLine(r.text, 200)}`);
  if (driver() !== 'bochs-drm') {
    if (driver() !== 'none') writeFileSync(`${dev}/driver/unbind`, VGA);
    writeFileSync(`${dev}/driver_override`, '\n');
    writeFileSync('/sys/bus/pci/drivers_probe', VGA);
  }
  waitFor(() => existsSync('/dev/fb0'), 10);
  run('systemctl', ['start', DM, DAEMON]);
  const left = desktopBack(30);
  if (left.length > 0) console.log(`LAB   ${id} cleanup: still wrong: ${left.join('; ')}`);
}

/** The desktop as it was at boot: what every hand-over must leave (or give) back. */
function desktopProblems() {
  const p = [];
  if (driver() !== 'bochs-drm') p.push(`${VGA} on ${driver()}, not bochs-drm`);
  if (!existsSync('/dev/fb0') || !fb0OnVga()) p.push(`no /dev/fb0 on the VGA (/proc/fb: ${procFb()})`);
  if (!fbconBound()) p.push(`fbcon not bound (${describeVtcons()})`);
  const dm = unit(DM);
  const nodes = openNodes(dm.pid);
  if (dm.active !== 'active' || !nodes.includes('/dev/dri/card0') || !nodes.includes('/dev/fb0'))
    p.push(`${DM} (${dm.id}) ${dm.active}, pid ${dm.pid} holds [${nodes.join(' ')}], not card0 and fb0`);
  const d = unit(DAEMON);
  if (d.active !== 'active' || !openNodes(d.pid).includes('/dev/dri/card0'))
    p.push(`${DAEMON} ${d.active}, pid ${d.pid} does not hold card0`);
  return p;
}
/** Waits (polling) for the whole desktop to be back; returns what is still missing. */
function desktopBack(seconds) {
  let p = [];
  waitFor(() => {
    p = desktopProblems();
    return p.length === 0;
  }, seconds);
  return p;
}
/** No record left; `viaStatus` also asks `qemu-hook status --json` (a Node start: seconds under TCG). */
function expectNothingHeld(c, viaStatus = false) {
  const st = stateRecords();
  c.expect(st.records.length + st.handovers.length === 0, `the state file still holds ${describeState(st)}`);
  if (!viaStatus) return;
  const s = status();
  c.expect(s.records.length === 0, `qemu-hook status --json lists ${s.records.length} records`);
}

// ------------------------------------------------------------------------------------ K: kernel facts
function k1(c) {
  const boot = read(BOOT_FB);
  for (const l of boot.trim().split('\n')) c.note(`boot| ${l}`);
  c.expect(read(`${dev}/boot_vga`).trim() === '1', `${VGA} is not the boot VGA`);
  c.expect(/EFI VGA/.test(boot), 'no EFI VGA framebuffer at boot (did OVMF hand over a GOP?)');
  c.expect(/efi-framebuffer/.test(boot), 'no efi-framebuffer platform device at boot');
  c.note(`now: driver ${driver()}, /proc/fb: ${procFb()}`);
  c.expect(driver() === 'bochs-drm', `${VGA} on ${driver()}, not bochs-drm`);
  c.expect(/bochs-drmdrmfb/.test(procFb()) && !/EFI VGA/.test(procFb()), `/proc/fb: ${procFb()}`);
  c.expect(
    !existsSync('/sys/bus/platform/devices/efi-framebuffer.0'),
    'efi-framebuffer.0 still registered after bochs-drm took over',
  );
  c.expect(fb0OnVga(), '/sys/class/graphics/fb0/device is not the VGA');
}
function k2(c) {
  c.note(`vtcons: ${describeVtcons()}`);
  const fbcon = vtcons().filter((v) => v.name.includes('frame buffer'));
  c.expect(fbcon.length === 1, `not exactly one fbcon vtcon by name (${describeVtcons()})`);
  c.expect(fbcon[0]?.bound, 'fbcon is not bound');
}
function k3(c) {
  for (const name of [DM, DAEMON]) {
    const u = unit(name);
    c.note(`${name}: ${u.id} ${u.active}, pid ${u.pid} holds ${openNodes(u.pid).join(' ') || 'nothing'}`);
  }
  c.note(`holders of card0: ${holdersOf('/dev/dri/card0').join(', ')}`);
  c.expect(unit(DM).id === 'fake-dm.service', `${DM} resolves to ${unit(DM).id}`);
  // the stand-in compositor exits 1 when KDSETMODE fails: active means tty1 is in KD_GRAPHICS
  for (const p of desktopProblems()) c.expect(false, p);
}

// ------------------------------------------------------------------------------------ H: hand-over
function h0(c) {
  writeConfig(null);
  const r = virsh('start', DOMAIN);
  c.note(`virsh start ${DOMAIN} without handover -> ${r.status}: ${oneLine(r.err, 400)}`);
  c.expect(r.status !== 0, 'the start succeeded without handover');
  c.expect(/handover/.test(r.err), 'the refusal does not name the handover key');
  c.expect(!virsh('domstate', DOMAIN).out.startsWith('running'), `${DOMAIN} is running`);
  for (const p of desktopProblems()) c.expect(false, `after the refusal: ${p}`);
  expectNothingHeld(c);
}

let handedOver = false;
function h1(c) {
  writeConfig(HANDOVER);
  const sim = qemuHook('--simulate', DOMAIN, 'prepare', '--json');
  let steps = [];
  try {
    steps = JSON.parse(sim.out).handover ?? [];
  } catch {}
  c.note(`--simulate --json handover: ${oneLine(JSON.stringify(steps), 600)}`);
  c.expect(
    steps.length > 0 &&
      steps.every((s) => s.step !== undefined && s.target !== undefined && s.action !== undefined),
    `--simulate ${DOMAIN} prepare --json lists no hand-over steps with step, target, action (exit ${sim.status})`,
  );
  for (const p of desktopProblems()) c.expect(false, `before the start: ${p}`);
  const from = logSize();
  const t0 = uptime();
  const r = virsh('start', DOMAIN);
  const wall = uptime() - t0;
  if (!c.expect(r.status === 0, `virsh start ${DOMAIN} failed: ${oneLine(r.text, 500)}`)) return;
  handedOver = true;
  const dm = unit(DM);
  const d = unit(DAEMON);
  c.note(
    `running: ${VGA} on ${driver()}; ${DM} ${dm.active}, ${DAEMON} ${d.active}; vtcons ${describeVtcons()}; /proc/fb: ${procFb()}`,
  );
  c.expect(dm.active === 'inactive', `${DM} is ${dm.active}, not stopped`);
  c.expect(d.active === 'inactive', `${DAEMON} is ${d.active}, not stopped`);
  c.expect(!fbconBound(), `fbcon still bound (${describeVtcons()})`);
  c.expect(driver() === 'vfio-pci', `${VGA} on ${driver()}, not vfio-pci`);
  c.expect(qemuHolds(group()), `${DOMAIN}'s QEMU does not hold /dev/vfio/${group()}`);
  const lines = hookLines(from);
  const t0Hook = lines.find((l) => l.op === 'prepare')?.time;
  for (const l of lines.filter((x) => x.msg === 'hand-over step done'))
    c.note(
      `hook: step ${l.step} ${l.kind} ${l.target} done at +${secs(l.time - t0Hook)} s (took ${secs(l.ms)} s, hook's share ${secs(l.hookMs)} s, of it the state write ${secs(l.stateMs ?? 0)} s, waited ${secs(l.waitedMs)} s)`,
    );
  const done = lines.find((l) => l.msg === 'hand-over done');
  // install.sh started qemu-hook.service (systemd is PID 1 here): the event ran in its worker.
  const runDone = lines.find((l) => l.msg === 'hook run done' && l.op === 'prepare');
  c.note(
    `the start's hook run: ${runDone?.resident ? 'in the resident hook (qemu-hook.service)' : 'in a Node started for the event'}, ${secs(runDone?.ms ?? 0)} s`,
  );
  c.expect(
    runDone?.resident === true,
    "the start's hook run was not the resident hook's (qemu-hook.service)",
  );
  console.log(
    done
      ? `LAB hand-over took ${secs(done.ms)} s (hook's share ${secs(done.hookMs)} s); virsh start took ${wall.toFixed(1)} s`
      : `LAB hand-over: the hook logged no 'hand-over done' line; virsh start took ${wall.toFixed(1)} s`,
  );
  c.expect(done, "the hook's log has no 'hand-over done' line with its timing");
}

function h2(c) {
  if (!c.expect(handedOver, 'skipped: the hand-over did not happen')) return;
  const from = logSize();
  const t0 = uptime();
  const r = virsh('destroy', DOMAIN);
  const wall = uptime() - t0;
  c.expect(r.status === 0, `virsh destroy ${DOMAIN} failed: ${oneLine(r.text)}`);
  const missing = desktopBack(60);
  c.note(
    `after the stop: ${VGA} on ${driver()}; vtcons ${describeVtcons()}; /proc/fb: ${procFb()}; card0 held by ${holdersOf('/dev/dri/card0').join(', ')}`,
  );
  for (const p of missing) c.expect(false, p);
  expectNothingHeld(c, true);
  // the give-back may run in parts (modules before the reattach, the rest after): add them up
  const stopLines = hookLines(from);
  for (const l of stopLines.filter((x) => x.msg === 'hand-over step given back'))
    c.note(
      `hook: step ${l.step} ${l.target} given back (took ${secs(l.ms)} s, hook's share ${secs(l.hookMs)} s, of it the state write ${secs(l.stateMs ?? 0)} s, waited ${secs(l.waitedMs)} s)`,
    );
  const parts = stopLines.filter((l) => l.msg === 'give-back done');
  const sum = (k) => parts.reduce((n, l) => n + Number(l[k] ?? 0), 0);
  console.log(
    parts.length > 0
      ? `LAB give-back took ${secs(sum('ms'))} s (hook's share ${secs(sum('hookMs'))} s); virsh destroy took ${wall.toFixed(1)} s`
      : `LAB give-back: the hook logged no 'give-back done' line; virsh destroy took ${wall.toFixed(1)} s`,
  );
  c.expect(parts.length > 0, "the hook's log has no 'give-back done' line with its timing");
  c.expect(sum('failed') === 0, `the give-back reports ${sum('failed')} failed steps`);
}

/** What libvirt does: a cleared environment, argv `<domain> <op> <subop> -`, the XML on stdin. */
function callHookLikeLibvirt(op, subop, xml) {
  const r = spawnSync(HOOK, [DOMAIN, op, subop, '-'], {
    input: xml,
    encoding: 'utf8',
    timeout: 180_000,
    killSignal: 'SIGKILL',
    env: { LC_ALL: 'C', PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root' },
  });
  return { status: r.status, signal: r.signal, err: (r.stderr ?? '').trim() };
}

/** The hook, called as libvirt calls it, SIGKILLs itself mid hand-over; nothing runs its release:
 *  `qemu-hook recover` alone must give everything back from the write-ahead records. */
function h3(c) {
  writeConfig(HANDOVER);
  const xml = virsh('dumpxml', '--inactive', DOMAIN).out;
  writeFileSync(FAULTS, `${CRASH_POINT}\n`);
  const r = callHookLikeLibvirt('prepare', 'begin', xml);
  rmSync(FAULTS, { force: true });
  c.note(`hook ${DOMAIN} prepare begin, SIGKILL at ${CRASH_POINT} -> status ${r.status} signal ${r.signal}`);
  // hooks/qemu runs node as its child (it falls back from the startup snapshot), so the sh front
  // reports node's SIGKILL as status 137, as libvirt sees it; the resident hook's server answers
  // the same for its worker
  c.expect(
    r.signal === 'SIGKILL' || r.status === 128 + 9,
    `the hook was not killed at ${CRASH_POINT} (status ${r.status}: ${oneLine(r.err, 200)})`,
  );
  const st = stateRecords();
  c.note(
    `after the kill: ${VGA} on ${driver()}; ${DM} ${unit(DM).active}, ${DAEMON} ${unit(DAEMON).active}; vtcons ${describeVtcons()}; state: ${describeState(st)}`,
  );
  c.expect(st.handovers.length > 0, 'no hand-over record survived the kill (nothing for recover to go on)');
  c.expect(unit(DM).active !== 'active', `${DM} still active: the kill came before the hand-over started`);
  const rec = qemuHook('recover');
  c.note(`qemu-hook recover -> ${rec.status}: ${oneLine(rec.text, 400)}`);
  c.expect(rec.status === 0, `qemu-hook recover exited ${rec.status}`);
  for (const p of desktopBack(60)) c.expect(false, `after recover: ${p}`);
  expectNothingHeld(c);
}

function h4(c) {
  writeConfig(`{ services: [${DAEMON}], timeout: 3, holders: refuse }`);
  // a process outside every unit the hand-over stops (it lives in lab-handover.service)
  const holder = spawn(HOLDER, ['/dev/dri/card0'], { detached: true, stdio: 'ignore' });
  try {
    c.expect(
      waitFor(() => openNodes(holder.pid).includes('/dev/dri/card0'), 10),
      'the stray holder did not open card0',
    );
    c.note(`stray holder pid ${holder.pid}; card0 held by ${holdersOf('/dev/dri/card0').join(', ')}`);
    const r = virsh('start', DOMAIN);
    c.note(`virsh start -> ${r.status}: ${oneLine(r.err, 500)}`);
    c.expect(r.status !== 0, 'the start succeeded although a holder never left');
    c.expect(r.err.includes(String(holder.pid)), `the refusal does not name the holder's pid ${holder.pid}`);
    c.expect(r.err.includes('holder'), 'the refusal does not name the holder command');
    c.expect(r.err.includes('lab-handover.service'), "the refusal does not name the holder's unit");
    c.expect(!virsh('domstate', DOMAIN).out.startsWith('running'), `${DOMAIN} is running`);
    for (const p of desktopBack(60)) c.expect(false, `after the refusal: ${p}`);
    expectNothingHeld(c);
  } finally {
    holder.kill('SIGKILL');
  }
}

// ------------------------------------------------------------------------------------ main
function main() {
  // It stops display managers, unloads GPU modules and detaches the VGA device: meant for the lab's
  // hand-over guest only, never the machine running the tests (run-lab.mjs boots that guest with
  // lab.guest=handover on its kernel command line).
  if (!/(^| )lab\.guest=handover( |$)/.test(readFileSync('/proc/cmdline', 'utf8').trim())) {
    console.error(
      'handover checks.mjs: runs only inside the lab hand-over guest (no lab.guest=handover on /proc/cmdline); nothing done',
    );
    process.exit(2);
  }
  const setup = new Check('setup', `${DOMAIN} defined; the desktop is up`);
  try {
    const r = virsh('define', `/lab/handover/domains/${DOMAIN}.xml`);
    setup.expect(r.status === 0, `virsh define: ${oneLine(r.text)}`);
    // the units start in parallel with this service: give them their moment
    for (const p of desktopBack(60)) setup.expect(false, p);
    expectNothingHeld(setup);
  } catch (err) {
    setup.problems.push(err.message);
  }
  setup.end();
  step(
    'K1',
    'kernel: efifb on the boot VGA at boot; bochs-drm took over, efi-framebuffer.0 gone, fb0 bochs-drmdrmfb',
    k1,
  );
  step('K2', 'kernel: fbcon (the vtcon named "frame buffer device", not a number) bound', k2);
  step(
    'K3',
    'systemd: display-manager.service holds card0 and fb0 (tty1 in KD_GRAPHICS), gpu-daemon.service holds card0',
    k3,
  );
  // Until the hand-over (issue 9, branch handover) is in the build, only the K checks can run: say
  // so plainly (neither PASS nor FAIL). Any other answer of check runs the H checks.
  writeConfig(HANDOVER);
  const knows = qemuHook('check');
  if (/unknown key "handover"/.test(knows.text))
    console.log(
      'LAB: hand-over checks H0-H4 not run: this build of qemu-hook has no handover key (issue 9 not merged)',
    );
  else {
    step(
      'H0',
      'hand-over: without handover in the config the start is refused naming the key; nothing touched',
      h0,
    );
    step(
      'H1',
      'hand-over: virsh start: both units stopped, fbcon unbound, the VGA on vfio-pci held by the domain QEMU',
      h1,
      {
        keepRunning: true,
      },
    );
    step(
      'H2',
      'hand-over: virsh destroy: bochs-drm back, /dev/fb0 back, fbcon bound to it, both units active and holding card0',
      h2,
    );
    step(
      'H3',
      `hand-over: hook SIGKILLed mid hand-over (${CRASH_POINT}), then qemu-hook recover: everything back`,
      h3,
    );
    // The stray holder lives in lab-handover.service, the unit running these checks: the
    // hand-over must not stop it (it stops only listed units and known GPU daemons), so the start
    // waits, then is refused naming it. (Before, the hand-over stopped every unit holding the GPU,
    // this one too, and the checks died with it: the guest "made no progress".)
    step(
      'H4',
      'hand-over: a holder that does not leave: start refused naming it (pid, command, unit), nothing half-done',
      h4,
    );
  }
  writeFileSync('/run/lab-counts', `${passed} ${failed}\n`);
}

main();
