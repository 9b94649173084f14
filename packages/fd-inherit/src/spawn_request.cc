// Plan-from-JS (see spawn_request.h): each part of NativeSpawnPlan read,
// checked and copied by a Read* step, the fds it names checked in this
// process, and the ChildPlan pointed at the copies. What lib/ decides
// (defaults, stdio, PATH, the environment) is decided before this runs;
// the checks here keep a mistake in lib/ from reaching a syscall.
#include <napi.h>

#include <algorithm>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <vector>

#include "internal/errors.h"
#include "spawn.h"
#include "spawn_request.h"

extern char** environ;

namespace folk {

namespace {

// The plan's properties, each checked for its type: otherwise a TypeError
// naming it.
int32_t IntProp(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("spawn plan: ") + key + " must be a number");
  return v.As<Napi::Number>().Int32Value();
}

bool BoolProp(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsBoolean()) throw Napi::TypeError::New(o.Env(), std::string("spawn plan: ") + key + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

Napi::Array ArrayProp(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) throw Napi::TypeError::New(o.Env(), std::string("spawn plan: ") + key + " must be an array");
  return v.As<Napi::Array>();
}

std::vector<std::string> Strings(const Napi::Array& a, const char* key) {
  std::vector<std::string> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value v = a.Get(i);
    if (!v.IsString()) throw Napi::TypeError::New(a.Env(), std::string("spawn plan: ") + key + " must hold strings");
    out.push_back(v.As<Napi::String>().Utf8Value());
  }
  return out;
}

std::vector<double> Doubles(const Napi::Array& a, const char* key) {
  std::vector<double> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value v = a.Get(i);
    if (!v.IsNumber()) throw Napi::TypeError::New(a.Env(), std::string("spawn plan: ") + key + " must hold numbers");
    out.push_back(v.As<Napi::Number>().DoubleValue());
  }
  return out;
}

std::vector<int32_t> Ints(const Napi::Array& a, const char* key) {
  // Clamped: converting an out-of-range double to int is undefined.
  std::vector<int32_t> out;
  for (double v : Doubles(a, key)) out.push_back(v >= -2147483648.0 && v <= 2147483647.0 ? static_cast<int32_t>(v) : -1);
  return out;
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(&s[0]);
  out.push_back(nullptr);
  return out;
}

// A source fd number in the plan that stands for /dev/null.
constexpr int kDevNull = -2;

// LISTEN_PID's and LISTEN_PIDFDID's values are written by the child once it
// knows them; the plan's "LISTEN_PID=" and "LISTEN_PIDFDID=" get room for
// any pid or inode id (20 digits) and a NUL.
constexpr char kListenPid[] = "LISTEN_PID=";
constexpr size_t kListenPidPrefix = sizeof(kListenPid) - 1;
constexpr char kListenPidfdid[] = "LISTEN_PIDFDID=";
constexpr size_t kListenPidfdidPrefix = sizeof(kListenPidfdid) - 1;

// statfs f_type of a cgroup v2 hierarchy (CGROUP2_SUPER_MAGIC); v1 has
// CGROUP_SUPER_MAGIC.
constexpr long kCgroup2Magic = 0x63677270;

// -1 (or anything not a representable count) is unlimited.
uint64_t RlimitValue(double v) {
  return v >= 0 && v < 18446744073709551615.0 ? static_cast<uint64_t>(v) : RLIM_INFINITY;
}

// What to run, with which environment, where.
void ReadProgram(const Napi::Object& plan, SpawnRequest* r) {
  Napi::Env env = plan.Env();
  Napi::Value file = plan.Get("file");
  if (!file.IsString()) throw Napi::TypeError::New(env, "spawn plan: file must be a string");
  r->file = file.As<Napi::String>().Utf8Value();
  r->argv = Strings(ArrayProp(plan, "argv"), "argv");
  // null: the C environment, which process.env holds when it is Node's own
  // object (lib/env.ts finds that out), copied here in C++ rather than
  // listed out in JavaScript.
  Napi::Value envp = plan.Get("envp");
  if (envp.IsNull()) {
    for (char** e = environ; *e != nullptr; ++e) r->envp.emplace_back(*e);
  } else {
    if (!envp.IsArray()) throw Napi::TypeError::New(env, "spawn plan: envp must be an array or null");
    r->envp = Strings(envp.As<Napi::Array>(), "envp");
  }
  r->listen_pid_index = IntProp(plan, "listenPidIndex");
  if (r->listen_pid_index >= 0) {
    size_t i = static_cast<size_t>(r->listen_pid_index);
    if (i >= r->envp.size() || r->envp[i] != kListenPid) {
      throw Napi::RangeError::New(env, "spawn plan: listenPidIndex must point at \"LISTEN_PID=\"");
    }
    r->envp[i].resize(kListenPidPrefix + 21, '\0');
  }
  // Last: where the kernel cannot tell, the child ends the environment just
  // before it.
  r->listen_pidfdid_index = IntProp(plan, "listenPidfdidIndex");
  if (r->listen_pidfdid_index >= 0) {
    size_t i = static_cast<size_t>(r->listen_pidfdid_index);
    if (i + 1 != r->envp.size() || r->envp[i] != kListenPidfdid) {
      throw Napi::RangeError::New(env, "spawn plan: listenPidfdidIndex must point at \"LISTEN_PIDFDID=\", the last entry");
    }
    r->envp[i].resize(kListenPidfdidPrefix + 21, '\0');
  }
  Napi::Value cwd = plan.Get("cwd");
  r->has_cwd = cwd.IsString();
  if (r->has_cwd) r->cwd = cwd.As<Napi::String>().Utf8Value();
}

// The child starts with this process's RLIMIT_NOFILE and places its fds
// before any options.rlimits applies, so every child fd number must be
// below the soft limit read here. A number past it could never be placed
// (and max_target + 1 must stay an int).
unsigned int ChildFdLimit(Napi::Env env) {
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == -1) throw ErrnoError(env, errno, "getrlimit");
  return nofile.rlim_cur < static_cast<rlim_t>(INT32_MAX) ? static_cast<unsigned int>(nofile.rlim_cur)
                                                          : static_cast<unsigned int>(INT32_MAX);
}

void CheckChildFd(Napi::Env env, int target, unsigned int fd_limit) {
  if (static_cast<unsigned int>(target) < fd_limit) return;
  // lib/index.ts names the option the number came from.
  Napi::RangeError e = Napi::RangeError::New(
      env, "child fd " + std::to_string(target) + " is out of range: the child's fd numbers must be below its RLIMIT_NOFILE (" +
               std::to_string(fd_limit) + ")");
  e.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  e.Set("childFd", Napi::Number::New(env, target));
  e.Set("fdLimit", Napi::Number::New(env, fd_limit));
  throw e;
}

// The fd plan: which parent fd goes to which child fd number. A closed
// source is reported here, in the parent, naming the child fd it was meant
// for; an inherited stdio fd the parent does not have open (`optional`)
// simply stays closed in the child. kDevNull as a source means /dev/null,
// opened once here for the child.
void ReadFds(const Napi::Object& plan, SpawnRequest* r) {
  Napi::Env env = plan.Env();
  std::vector<int32_t> targets = Ints(ArrayProp(plan, "targets"), "targets");
  std::vector<int32_t> sources = Ints(ArrayProp(plan, "sources"), "sources");
  Napi::Array optional = ArrayProp(plan, "optional");
  if (sources.size() != targets.size() || optional.Length() != targets.size()) {
    throw Napi::TypeError::New(env, "spawn plan: targets, sources and optional must have the same length");
  }
  const unsigned int fd_limit = ChildFdLimit(env);
  int max_target = 2;
  r->moves.reserve(targets.size());
  for (size_t i = 0; i < targets.size(); ++i) {
    int target = targets[i];
    int source = sources[i];
    if (source == kDevNull) {
      if (r->dev_null.fd == -1) {
        r->dev_null.fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (r->dev_null.fd == -1) throw ErrnoError(env, errno, "open");
        int moved = folk::MoveAboveStdio(r->dev_null.fd);
        if (moved == -1) throw ErrnoError(env, errno, "fcntl");
        r->dev_null.fd = moved;
      }
      source = r->dev_null.fd;
    }
    if (target < 0 || source < 0) throw Napi::RangeError::New(env, "spawn plan: fd numbers must be >= 0");
    CheckChildFd(env, target, fd_limit);
    if (fcntl(source, F_GETFD) == -1) {
      if (optional.Get(static_cast<uint32_t>(i)).ToBoolean().Value()) continue;
      Napi::Error e = ErrnoError(env, errno, "fcntl");
      e.Set("fd", Napi::Number::New(env, source));
      e.Set("childFd", Napi::Number::New(env, target));
      throw e;
    }
    r->moves.push_back({target, source, -1});
    max_target = std::max(max_target, target);
    if (target >= 3) r->keep.push_back(target);
  }
  std::sort(r->keep.begin(), r->keep.end());
  if (std::adjacent_find(r->keep.begin(), r->keep.end()) != r->keep.end()) {
    throw Napi::RangeError::New(env, "spawn plan: a child fd number appears twice");
  }
  r->plan.max_target = max_target;
  r->plan.fd_limit = fd_limit;
  r->plan.close_others = BoolProp(plan, "closeOtherFds");
}

// Session, signals, limits and credentials.
void ReadProcess(const Napi::Object& plan, SpawnRequest* r) {
  Napi::Env env = plan.Env();
  folk::ChildPlan& p = r->plan;
  p.setsid = BoolProp(plan, "setsid");
  p.pdeathsig = IntProp(plan, "pdeathsig");
  p.umask = IntProp(plan, "umask");
  p.no_new_privs = BoolProp(plan, "noNewPrivs");
  p.uid = IntProp(plan, "uid");
  p.gid = IntProp(plan, "gid");
  p.drop_groups = BoolProp(plan, "dropGroups");
  for (int32_t sig : Ints(ArrayProp(plan, "defaultSignals"), "defaultSignals")) {
    if (sig < 1 || sig > 64) throw Napi::RangeError::New(env, "spawn plan: defaultSignals holds signal numbers 1-64");
    p.default_signals |= uint64_t{1} << (sig - 1);
  }
  // [resource, soft, hard, ...]; doubles because limits go beyond int32,
  // and -1 for unlimited.
  std::vector<double> flat = Doubles(ArrayProp(plan, "rlimits"), "rlimits");
  if (flat.size() % 3 != 0) throw Napi::TypeError::New(env, "spawn plan: rlimits holds triples");
  for (size_t i = 0; i + 2 < flat.size(); i += 3) {
    r->rlimits.push_back({static_cast<int>(flat[i]), RlimitValue(flat[i + 1]), RlimitValue(flat[i + 2])});
  }
  Napi::Value groups = plan.Get("groups");
  p.ngroups = -1;
  if (groups.IsArray()) {
    for (int32_t g : Ints(groups.As<Napi::Array>(), "groups")) r->groups.push_back(static_cast<gid_t>(g));
    p.ngroups = static_cast<int>(r->groups.size());
  }
}

// A string property or null: whether it was a string, copied into *out.
bool OptionalString(const Napi::Object& o, const char* key, std::string* out) {
  Napi::Value v = o.Get(key);
  if (v.IsNull()) return false;
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string("spawn plan: ") + key + " must be a string or null");
  *out = v.As<Napi::String>().Utf8Value();
  return true;
}

// options.cgroup, opened and checked here, in the parent: CLONE_INTO_CGROUP
// takes a directory of a cgroup v2 hierarchy. EINVAL with `fsType` for any
// other (a cgroup v1 controller's, a tmpfs): lib/ says which it is.
void OpenCgroup(Napi::Env env, const std::string& path, SpawnRequest* r) {
  r->cgroup.fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (r->cgroup.fd == -1) throw ErrnoError(env, errno, "cgroup");
  int moved = folk::MoveAboveStdio(r->cgroup.fd);
  if (moved == -1) throw ErrnoError(env, errno, "fcntl");
  r->cgroup.fd = moved;
  struct statfs fs;
  if (fstatfs(r->cgroup.fd, &fs) == -1) throw ErrnoError(env, errno, "cgroup");
  if (static_cast<long>(fs.f_type) != kCgroup2Magic) {
    Napi::Error e = ErrnoError(env, EINVAL, "cgroup");
    e.Set("fsType", Napi::Number::New(env, static_cast<double>(static_cast<unsigned long>(fs.f_type))));
    throw e;
  }
  r->cgroup_procs.fd = openat(r->cgroup.fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
  if (r->cgroup_procs.fd == -1) throw ErrnoError(env, errno, "cgroup");
  moved = folk::MoveAboveStdio(r->cgroup_procs.fd);
  if (moved == -1) throw ErrnoError(env, errno, "fcntl");
  r->cgroup_procs.fd = moved;
}

// Namespaces, user maps, mounts and cgroup (NativeIsolationPlan), or null:
// one property read for a plain spawn. What would act on this process's
// own namespaces (a mount step without a new mount namespace, a hostname
// without a new UTS one) is refused here too, not only in lib/.
void ReadIsolation(const Napi::Object& plan, SpawnRequest* r) {
  Napi::Env env = plan.Env();
  Napi::Value value = plan.Get("isolation");
  if (value.IsNull()) return;
  if (!value.IsObject()) throw Napi::TypeError::New(env, "spawn plan: isolation must be an object or null");
  Napi::Object iso = value.As<Napi::Object>();
  folk::IsolationPlan& n = r->plan.iso;
  const int32_t flags = IntProp(iso, "cloneFlags");
  int32_t known = 0;
  for (const auto& ns : kNamespaces) known |= ns.flag;
  if ((flags & ~known) != 0) throw Napi::RangeError::New(env, "spawn plan: cloneFlags holds CLONE_NEW* flags only");
  n.clone_flags = static_cast<uint32_t>(flags);
  n.deny_setgroups = BoolProp(iso, "denySetgroups");
  n.mount_proc = BoolProp(iso, "mountProc");
  std::string propagation;
  if (OptionalString(iso, "propagation", &propagation)) {
    if (propagation != "private" && propagation != "slave") {
      throw Napi::RangeError::New(env, "spawn plan: propagation must be 'private', 'slave' or null");
    }
    n.propagation = propagation == "private" ? MS_PRIVATE : MS_SLAVE;
  }
  const bool has_uid_map = OptionalString(iso, "uidMap", &r->uid_map);
  const bool has_gid_map = OptionalString(iso, "gidMap", &r->gid_map);
  const bool has_hostname = OptionalString(iso, "hostname", &r->hostname);
  const bool has_root = OptionalString(iso, "root", &r->root);
  const bool user = (flags & CLONE_NEWUSER) != 0;
  const bool mount = (flags & CLONE_NEWNS) != 0;
  if (!user && (has_uid_map || has_gid_map || n.deny_setgroups)) throw Napi::RangeError::New(env, "spawn plan: maps need CLONE_NEWUSER");
  if (!mount && (has_root || n.mount_proc || n.propagation != 0)) throw Napi::RangeError::New(env, "spawn plan: mounts need CLONE_NEWNS");
  if (has_hostname && (flags & CLONE_NEWUTS) == 0) throw Napi::RangeError::New(env, "spawn plan: hostname needs CLONE_NEWUTS");
  n.uid_map = has_uid_map ? r->uid_map.c_str() : nullptr;
  n.uid_map_len = r->uid_map.size();
  n.gid_map = has_gid_map ? r->gid_map.c_str() : nullptr;
  n.gid_map_len = r->gid_map.size();
  n.hostname = has_hostname ? r->hostname.c_str() : nullptr;
  n.hostname_len = r->hostname.size();
  n.root = has_root ? r->root.c_str() : nullptr;
  std::string cgroup;
  if (OptionalString(iso, "cgroup", &cgroup)) OpenCgroup(env, cgroup, r);
  n.cgroup_fd = r->cgroup.fd;
  n.cgroup_procs_fd = r->cgroup_procs.fd;
}

// Points the ChildPlan at the request's copies, once they are complete.
void Point(SpawnRequest* r) {
  folk::ChildPlan& p = r->plan;
  r->argv_ptrs = Pointers(r->argv);
  r->envp_ptrs = Pointers(r->envp);
  p.path = r->file.c_str();
  p.argv = r->argv_ptrs.data();
  p.envp = r->envp_ptrs.data();
  p.cwd = r->has_cwd ? r->cwd.c_str() : nullptr;
  p.listen_pid = r->listen_pid_index >= 0 ? &r->envp[static_cast<size_t>(r->listen_pid_index)][kListenPidPrefix] : nullptr;
  if (r->listen_pidfdid_index >= 0) {
    size_t i = static_cast<size_t>(r->listen_pidfdid_index);
    p.listen_pidfdid = &r->envp[i][kListenPidfdidPrefix];
    p.listen_pidfdid_slot = &r->envp_ptrs[i];
  }
  p.moves = r->moves.data();
  p.nmoves = static_cast<int>(r->moves.size());
  p.keep = r->keep.data();
  p.nkeep = static_cast<int>(r->keep.size());
  p.rlimits = r->rlimits.data();
  p.nrlimits = static_cast<int>(r->rlimits.size());
  p.groups = r->groups.data();
}

}  // namespace

void ReadSpawnRequest(const Napi::Object& plan, SpawnRequest* r) {
  ReadProgram(plan, r);
  ReadFds(plan, r);
  ReadProcess(plan, r);
  ReadIsolation(plan, r);
  Point(r);
}

}  // namespace folk
