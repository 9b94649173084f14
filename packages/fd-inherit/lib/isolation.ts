// Namespaces, user maps, the mount namespace's root and /proc, and the
// cgroup a child starts in: spawn()'s options read into an
// IsolationRequest, the binding's share of the plan, and the words spawn()'s
// errors use for these steps. A spawn that asks for none of it gets null
// here and a plan without isolation: the plain spawn, unchanged.
import { readFileSync } from 'node:fs';
import { invalidArgType, invalidArgValue, optionalBoolean, optionsObject, outOfRange, validateCString, validateInteger } from './internal/args.js';
import type { NativeIsolationPlan } from './native.js';
import { native } from './native.js';
import type { IdMapping, NamespaceName } from './types.js';

type ErrnoException = NodeJS.ErrnoException;

/** In the order the README and error messages list them. */
const NAMESPACE_NAMES: readonly NamespaceName[] = ['user', 'pid', 'mount', 'net', 'uts', 'ipc', 'cgroup'];

/** The options this file reads; a spawn with none of them set is not isolated. */
const ISOLATION_KEYS = ['namespaces', 'uidMap', 'gidMap', 'setgroups', 'hostname', 'root', 'mountProc', 'mountPropagation', 'cgroup'];

/** The largest id a map may name: (uid_t)-1 is no id. */
const MAX_ID = 2 ** 32 - 2;

/** Lines a uid_map or gid_map may have (UID_GID_MAP_MAX_EXTENTS since Linux 4.15; 5 before). */
const MAX_MAP_LINES = 340;

/**
 * The kernel takes a map in one write of less than a page, and refuses a
 * longer one (EINVAL) whatever its lines. 4096 is the page on x86-64 and
 * the smallest anywhere, so a map that passes here passes on any machine.
 */
const MAX_MAP_BYTES = 4095;

/** HOST_NAME_MAX. */
const MAX_HOSTNAME_BYTES = 64;

/** statfs f_type of a cgroup v1 hierarchy (CGROUP_SUPER_MAGIC). */
const CGROUP1_MAGIC = 0x27e0eb;

export interface IsolationRequest {
  /** The new namespaces, in NAMESPACE_NAMES order. */
  namespaces: NamespaceName[];
  uidMap: IdMapping[] | null;
  gidMap: IdMapping[] | null;
  setgroups: 'deny' | 'allow';
  hostname: string | null;
  root: string | null;
  mountProc: boolean;
  mountPropagation: 'private' | 'slave';
  cgroup: string | null;
}

/** options' isolation part, checked; null when it asks for nothing. */
export function parseIsolation(opts: Record<string, unknown>): IsolationRequest | null {
  if (ISOLATION_KEYS.every((key) => opts[key] === undefined)) return null;
  const namespaces = parseNamespaces(opts['namespaces']);
  const has = (ns: NamespaceName) => namespaces.includes(ns);
  const needs = (key: string, ns: NamespaceName) => {
    if (opts[key] !== undefined && !has(ns)) throw invalidArgValue(`options.${key}`, `needs options.namespaces.${ns}`, opts[key]);
  };
  needs('uidMap', 'user');
  needs('gidMap', 'user');
  needs('setgroups', 'user');
  needs('hostname', 'uts');
  needs('root', 'mount');
  needs('mountPropagation', 'mount');
  if (opts['mountProc'] === true) needs('mountProc', 'mount');
  const setgroups = opts['setgroups'] ?? 'deny';
  if (setgroups !== 'deny' && setgroups !== 'allow') throw invalidArgValue('options.setgroups', "must be 'deny' or 'allow'", setgroups);
  const propagation = opts['mountPropagation'] ?? 'private';
  if (propagation !== 'private' && propagation !== 'slave') {
    throw invalidArgValue('options.mountPropagation', "must be 'private' or 'slave'", propagation);
  }
  return {
    namespaces,
    uidMap: parseIdMap(opts['uidMap'], 'options.uidMap'),
    gidMap: parseIdMap(opts['gidMap'], 'options.gidMap'),
    setgroups,
    hostname: parseHostname(opts['hostname']),
    root: opts['root'] === undefined ? null : validateCString(opts['root'], 'options.root'),
    mountProc: optionalBoolean(opts, 'mountProc', has('mount') && has('pid')),
    mountPropagation: propagation,
    cgroup: opts['cgroup'] === undefined ? null : validateCString(opts['cgroup'], 'options.cgroup'),
  };
}

function parseNamespaces(value: unknown): NamespaceName[] {
  const given = optionsObject(value, 'options.namespaces');
  for (const key of Object.keys(given)) {
    if (!(NAMESPACE_NAMES as readonly string[]).includes(key)) {
      throw invalidArgValue('options.namespaces', `has an unknown namespace '${key}' (known: ${NAMESPACE_NAMES.join(', ')})`, key);
    }
  }
  return NAMESPACE_NAMES.filter((ns) => optionalBoolean(given, ns, false, 'options.namespaces'));
}

function parseIdMap(value: unknown, name: string): IdMapping[] | null {
  if (value === undefined) return null;
  if (!Array.isArray(value)) throw invalidArgType(name, 'an instance of Array', value);
  const map = Array.from(value, (entry: unknown, i: number) => parseIdMapping(entry, `${name}[${i}]`));
  checkMapSize(map, name);
  return map;
}

function parseIdMapping(entry: unknown, at: string): IdMapping {
  if (entry === null || typeof entry !== 'object') throw invalidArgType(at, 'of type object', entry);
  const e = entry as Record<string, unknown>;
  const inside = validateInteger(e['inside'], `${at}.inside`, 0, MAX_ID);
  const outside = validateInteger(e['outside'], `${at}.outside`, 0, MAX_ID);
  const count = validateInteger(e['count'], `${at}.count`, 1, MAX_ID + 1);
  const last = Math.max(inside, outside) + count - 1;
  if (last > MAX_ID) throw outOfRange(`${at}.count`, `at most ${MAX_ID + 1 - Math.max(inside, outside)} here (ids end at ${MAX_ID})`, count);
  return { inside, outside, count };
}

/**
 * Refuses up front, with its reason, a map the kernel would refuse with a
 * bare EINVAL from the middle of the spawn: more lines than its limit, or
 * more text than one write may carry (MAX_MAP_BYTES).
 */
function checkMapSize(map: IdMapping[], name: string): void {
  if (map.length > MAX_MAP_LINES) throw outOfRange(name, `at most ${MAX_MAP_LINES} entries long (the kernel's limit)`, map.length);
  const bytes = mapText(map).length; // ASCII digits, spaces and newlines: a byte each
  if (bytes > MAX_MAP_BYTES) {
    throw outOfRange(
      name,
      `less than ${MAX_MAP_BYTES + 1} bytes written out as "inside outside count" lines (the kernel takes a map in one write of less than a page)`,
      bytes,
    );
  }
}

function parseHostname(value: unknown): string | null {
  if (value === undefined) return null;
  const hostname = validateCString(value, 'options.hostname');
  if (Buffer.byteLength(hostname) > MAX_HOSTNAME_BYTES) {
    throw invalidArgValue('options.hostname', `must be at most ${MAX_HOSTNAME_BYTES} bytes`, hostname);
  }
  return hostname;
}

/** The map as /proc/PID/uid_map takes it: one "inside outside count" line per range. */
function mapText(map: IdMapping[]): string {
  return map.map((m) => `${m.inside} ${m.outside} ${m.count}\n`).join('');
}

/** The binding's share of the plan: null for a spawn without isolation. */
export function nativeIsolation(iso: IsolationRequest | null): NativeIsolationPlan | null {
  if (iso === null) return null;
  const has = (ns: NamespaceName) => iso.namespaces.includes(ns);
  return {
    cloneFlags: iso.namespaces.reduce((flags, ns) => flags | native.NAMESPACES[ns]!, 0),
    uidMap: iso.uidMap && mapText(iso.uidMap),
    gidMap: iso.gidMap && mapText(iso.gidMap),
    denySetgroups: has('user') && iso.setgroups === 'deny',
    hostname: iso.hostname,
    propagation: has('mount') ? iso.mountPropagation : null,
    root: iso.root,
    mountProc: iso.mountProc,
    cgroup: iso.cgroup,
  };
}

/** What a failed step of the isolation was, for spawnError: the words after the code, and the namespace. */
export interface IsolationStep {
  what: string;
  namespace?: NamespaceName;
}

/**
 * The message part for a step of the isolation that failed, or null when
 * `step` is not one. `spawnOf` is "spawn 'file'".
 */
export function isolationStep(raw: ErrnoException & { fsType?: number }, step: string, iso: IsolationRequest | null, spawnOf: string): IsolationStep | null {
  if (iso === null) return null;
  const code = raw.code ?? '';
  const hint = (text: string | undefined) => (text ? `: ${text}` : '');
  switch (step) {
    case 'clone':
      return { what: `clone (${spawnOf} in ${cloneWhat(iso)})${hint(cloneHint(code, iso))}` };
    case 'write uid_map':
    case 'write gid_map':
    case 'write setgroups':
      return { what: `${step} of the new user namespace (${spawnOf})${hint(mapHint(code, step, iso))}`, namespace: 'user' };
    case 'sethostname':
      return { what: `sethostname '${iso.hostname}' in the new UTS namespace (${spawnOf})`, namespace: 'uts' };
    case 'mount propagation':
      return { what: `mount --make-r${iso.mountPropagation} / in the new mount namespace (${spawnOf})`, namespace: 'mount' };
    case 'mount root':
      return { what: `bind-mount root '${iso.root}' onto itself (${spawnOf})`, namespace: 'mount' };
    case 'chdir root':
      return { what: `chdir into root '${iso.root}' (${spawnOf})`, namespace: 'mount' };
    case 'mount /proc': {
      const where = iso.root === null ? '/proc' : `'${iso.root}/proc'`;
      return { what: `mount a new /proc at ${where} (${spawnOf})${hint(code === 'ENOENT' ? 'the root has no proc directory' : undefined)}`, namespace: 'mount' };
    }
    case 'pivot_root':
      return { what: `pivot_root into '${iso.root}' (${spawnOf})`, namespace: 'mount' };
    case 'umount old root':
      return { what: `detach the old root after pivot_root (${spawnOf})`, namespace: 'mount' };
    case 'cgroup':
      return { what: `cgroup '${iso.cgroup}' (${spawnOf})${hint(cgroupHint(raw, iso.cgroup ?? ''))}` };
    case 'unshare cgroup':
      return { what: `unshare a new cgroup namespace in cgroup '${iso.cgroup}' (${spawnOf})`, namespace: 'cgroup' };
    default:
      return null;
  }
}

function cloneWhat(iso: IsolationRequest): string {
  const parts: string[] = [];
  if (iso.namespaces.length) parts.push(`new ${iso.namespaces.join(', ')} namespace${iso.namespaces.length > 1 ? 's' : ''}`);
  if (iso.cgroup !== null) parts.push(`cgroup '${iso.cgroup}'`);
  return parts.join(', ');
}

function cloneHint(code: string, iso: IsolationRequest): string | undefined {
  const user = iso.namespaces.includes('user');
  const others = iso.namespaces.some((ns) => ns !== 'user');
  switch (code) {
    case 'ENOSPC':
      return 'a limit on the number of namespaces was reached (/proc/sys/user/max_*_namespaces), or user namespaces nest more than 32 deep';
    case 'EUSERS':
      return 'user namespaces are nested too deep';
    case 'EPERM':
      if (user) return 'this system does not let this process create a user namespace (a sysctl, AppArmor or seccomp policy, or a chroot)';
      if (others) return 'new namespaces need CAP_SYS_ADMIN; with namespaces.user they need none';
      return iso.cgroup === null ? undefined : cgroupErrnoHint(code, iso.cgroup);
    case 'EINVAL':
      return 'the kernel has no such namespace, or no CLONE_INTO_CGROUP (Linux 5.7), or this is qemu-user';
    default:
      return iso.cgroup === null ? undefined : cgroupErrnoHint(code, iso.cgroup);
  }
}

function mapHint(code: string, step: string, iso: IsolationRequest): string | undefined {
  // Size and line count were checked before the spawn (checkMapSize).
  if (code === 'EINVAL') return "the kernel refused the map (overlapping ranges, an outside id this process's namespace does not map, or more than 5 lines before Linux 4.15)";
  if (code !== 'EPERM') return undefined;
  if (step === 'write gid_map' && iso.setgroups === 'allow') {
    return "without CAP_SETGID here, a gid map needs setgroups: 'deny' (and can map only your own gid)";
  }
  if (step === 'write setgroups') return undefined;
  return `without CAP_SET${step === 'write uid_map' ? 'UID' : 'GID'} here, a map can name only your own id, once, with count 1`;
}

function cgroupHint(raw: ErrnoException & { fsType?: number }, path: string): string | undefined {
  if (raw.code === 'EINVAL' && raw.fsType !== undefined) {
    const v2 = cgroup2Mount();
    const where = v2 === null ? 'no cgroup v2 hierarchy is mounted' : `cgroup v2 is mounted at ${v2}`;
    const what = raw.fsType === CGROUP1_MAGIC ? 'in a cgroup v1 hierarchy' : 'not in a cgroup file system';
    return `not a cgroup v2 directory (it is ${what}; ${where})`;
  }
  if (raw.code === 'ENOENT') return `no such directory${cgroup2Mount() === null ? ', and no cgroup v2 hierarchy is mounted' : ''}`;
  return cgroupErrnoHint(raw.code ?? '', path);
}

/** Why the kernel would not put a new process in the cgroup, whether clone3 or the child's own write said so. */
function cgroupErrnoHint(code: string, path: string): string | undefined {
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return `no permission to move a process into it (write access to ${path}/cgroup.procs and to that of a common ancestor)`;
    case 'EBUSY':
      return 'it has controllers enabled in its cgroup.subtree_control, so it cannot hold processes';
    case 'ENOTSUP':
    case 'EOPNOTSUPP':
      return "it cannot hold a process in its state (cgroup.type 'domain invalid')";
    case 'ENODEV':
      return 'it has been removed';
    default:
      return undefined;
  }
}

/** Where a cgroup2 file system is mounted in this mount namespace, or null. */
function cgroup2Mount(): string | null {
  try {
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const [before, after] = line.split(' - ');
      if (after?.startsWith('cgroup2 ')) return before!.split(' ')[4]!;
    }
  } catch {
    // No /proc: say nothing about where it is.
  }
  return null;
}
