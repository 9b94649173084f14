// N-API face of @folk/fd-inherit. Thin on purpose: lib/index.ts decides
// defaults, resolves stdio, searches PATH and builds the environment; this
// file turns the finished plan into C data (spawn.cc) and reports errno the
// way Node's own system errors look.
#include <napi.h>
#include <uv.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <errno.h>
#include <fcntl.h>
#include <string>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

#include "spawn.h"

extern char** environ;

namespace {

// errnos execve can give that libuv has no name for ("Unknown system error").
struct ExtraErrno {
  int err;
  const char* code;
  const char* message;
};
const ExtraErrno kExtraErrnos[] = {
    {ENOEXEC, "ENOEXEC", "exec format error"},
    {ECHILD, "ECHILD", "no child processes"},
    {ELIBBAD, "ELIBBAD", "accessing a corrupted shared library"},
};

// "ENOENT: no such file or directory, execve" with code, errno (negative,
// as libuv and Node report it) and syscall.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall) {
  std::string code = uv_err_name(-err);
  std::string message = uv_strerror(-err);
  for (const ExtraErrno& extra : kExtraErrnos) {
    if (extra.err == err) {
      code = extra.code;
      message = extra.message;
    }
  }
  Napi::Error e = Napi::Error::New(env, code + ": " + message + ", " + syscall);
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("code", Napi::String::New(env, code));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

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

// Copies, not pointers into V8's heap: the child reads these while other
// threads of the parent (V8's GC helpers among them) keep running.
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

// Closes its fd when the scope ends, also when a JavaScript exception unwinds it.
struct OwnedFd {
  int fd = -1;
  ~OwnedFd() {
    if (fd != -1) close(fd);
  }
};

// -1 (or anything not a representable count) is unlimited.
uint64_t RlimitValue(double v) {
  return v >= 0 && v < 18446744073709551615.0 ? static_cast<uint64_t>(v) : RLIM_INFINITY;
}

// spawn(plan): [pid, pidfd]. The plan's shape is NativeSpawnPlan in
// lib/native.ts. Throws an errno Error whose syscall names the step that
// failed (execve, chdir, dup2, clone, ...); lib/index.ts turns it into the
// public 'spawn' error.
Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "spawn(plan: object)");
  Napi::Object plan = info[0].As<Napi::Object>();

  Napi::Value file_value = plan.Get("file");
  if (!file_value.IsString()) throw Napi::TypeError::New(env, "spawn plan: file must be a string");
  std::string file = file_value.As<Napi::String>().Utf8Value();
  std::vector<std::string> argv = Strings(ArrayProp(plan, "argv"), "argv");
  // null: this process's own environment (the main thread's process.env),
  // copied here in C++ rather than listed out in JavaScript.
  std::vector<std::string> envp;
  Napi::Value envp_value = plan.Get("envp");
  if (envp_value.IsNull()) {
    for (char** e = environ; *e != nullptr; ++e) envp.emplace_back(*e);
  } else {
    if (!envp_value.IsArray()) throw Napi::TypeError::New(env, "spawn plan: envp must be an array or null");
    envp = Strings(envp_value.As<Napi::Array>(), "envp");
  }
  int32_t listen_pid_index = IntProp(plan, "listenPidIndex");
  int32_t listen_pidfdid_index = IntProp(plan, "listenPidfdidIndex");
  Napi::Value cwd_value = plan.Get("cwd");
  std::string cwd;
  bool has_cwd = cwd_value.IsString();
  if (has_cwd) cwd = cwd_value.As<Napi::String>().Utf8Value();

  std::vector<int32_t> targets = Ints(ArrayProp(plan, "targets"), "targets");
  std::vector<int32_t> sources = Ints(ArrayProp(plan, "sources"), "sources");
  Napi::Array optional = ArrayProp(plan, "optional");
  if (sources.size() != targets.size() || optional.Length() != targets.size()) {
    throw Napi::TypeError::New(env, "spawn plan: targets, sources and optional must have the same length");
  }
  std::vector<double> rlimit_flat = Doubles(ArrayProp(plan, "rlimits"), "rlimits");
  Napi::Value groups_value = plan.Get("groups");
  std::vector<int32_t> group_ints;
  bool has_groups = groups_value.IsArray();
  if (has_groups) group_ints = Ints(groups_value.As<Napi::Array>(), "groups");

  folk::ChildPlan p = {};
  p.close_others = BoolProp(plan, "closeOtherFds");
  p.setsid = BoolProp(plan, "setsid");
  p.pdeathsig = IntProp(plan, "pdeathsig");
  p.umask = IntProp(plan, "umask");
  p.no_new_privs = BoolProp(plan, "noNewPrivs");
  p.uid = IntProp(plan, "uid");
  p.gid = IntProp(plan, "gid");
  for (int32_t sig : Ints(ArrayProp(plan, "defaultSignals"), "defaultSignals")) {
    if (sig < 1 || sig > 64) throw Napi::RangeError::New(env, "spawn plan: defaultSignals holds signal numbers 1-64");
    p.default_signals |= uint64_t{1} << (sig - 1);
  }

  // The fd plan. A closed source is reported here, in the parent, naming the
  // child fd it was meant for; an inherited stdio fd the parent does not
  // have open simply stays closed in the child.
  // kDevNull as a source means /dev/null, opened once here for the child
  // and closed again below whatever happens.
  // The child starts with this process's RLIMIT_NOFILE and places its fds
  // before any options.rlimits applies, so every child fd number must be
  // below the soft limit read here. A number past it could never be placed
  // (and max_target + 1 must stay an int).
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == -1) throw ErrnoError(env, errno, "getrlimit");
  const unsigned int fd_limit = nofile.rlim_cur < static_cast<rlim_t>(INT32_MAX)
                                    ? static_cast<unsigned int>(nofile.rlim_cur)
                                    : static_cast<unsigned int>(INT32_MAX);

  std::vector<folk::FdMove> moves;
  std::vector<int> keep;
  moves.reserve(targets.size());
  int max_target = 2;
  OwnedFd dev_null;
  for (size_t i = 0; i < targets.size(); ++i) {
    int target = targets[i];
    int source = sources[i];
    if (source == kDevNull) {
      if (dev_null.fd == -1) {
        dev_null.fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (dev_null.fd == -1) throw ErrnoError(env, errno, "open");
        int moved = folk::MoveAboveStdio(dev_null.fd);
        if (moved == -1) throw ErrnoError(env, errno, "fcntl");
        dev_null.fd = moved;
      }
      source = dev_null.fd;
    }
    if (target < 0 || source < 0) throw Napi::RangeError::New(env, "spawn plan: fd numbers must be >= 0");
    if (static_cast<unsigned int>(target) >= fd_limit) {
      // lib/index.ts names the option the number came from.
      Napi::RangeError e = Napi::RangeError::New(
          env, "child fd " + std::to_string(target) + " is out of range: the child's fd numbers must be below its RLIMIT_NOFILE (" +
                   std::to_string(fd_limit) + ")");
      e.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
      e.Set("childFd", Napi::Number::New(env, target));
      e.Set("fdLimit", Napi::Number::New(env, fd_limit));
      throw e;
    }
    if (fcntl(source, F_GETFD) == -1) {
      if (optional.Get(static_cast<uint32_t>(i)).ToBoolean().Value()) continue;
      Napi::Error e = ErrnoError(env, errno, "fcntl");
      e.Set("fd", Napi::Number::New(env, source));
      e.Set("childFd", Napi::Number::New(env, target));
      throw e;
    }
    moves.push_back({target, source, -1});
    max_target = std::max(max_target, target);
    if (target >= 3) keep.push_back(target);
  }
  std::sort(keep.begin(), keep.end());
  if (std::adjacent_find(keep.begin(), keep.end()) != keep.end()) {
    throw Napi::RangeError::New(env, "spawn plan: a child fd number appears twice");
  }
  p.moves = moves.data();
  p.nmoves = static_cast<int>(moves.size());
  p.max_target = max_target;
  p.keep = keep.data();
  p.nkeep = static_cast<int>(keep.size());
  p.fd_limit = fd_limit;

  if (rlimit_flat.size() % 3 != 0) throw Napi::TypeError::New(env, "spawn plan: rlimits holds triples");
  // [resource, soft, hard, ...]; doubles because limits go beyond int32,
  // and -1 for unlimited.
  std::vector<folk::RlimitSetting> rlimits;
  for (size_t i = 0; i + 2 < rlimit_flat.size(); i += 3) {
    rlimits.push_back({static_cast<int>(rlimit_flat[i]), RlimitValue(rlimit_flat[i + 1]), RlimitValue(rlimit_flat[i + 2])});
  }
  p.rlimits = rlimits.data();
  p.nrlimits = static_cast<int>(rlimits.size());

  std::vector<gid_t> groups(group_ints.begin(), group_ints.end());
  p.groups = groups.data();
  p.ngroups = has_groups ? static_cast<int>(groups.size()) : -1;
  p.drop_groups = BoolProp(plan, "dropGroups");

  // LISTEN_PID's value is written by the child once it knows its pid; make
  // room for it now.
  static const char kListenPid[] = "LISTEN_PID=";
  if (listen_pid_index >= 0) {
    if (static_cast<size_t>(listen_pid_index) >= envp.size() || envp[listen_pid_index] != kListenPid) {
      throw Napi::RangeError::New(env, "spawn plan: listenPidIndex must point at \"LISTEN_PID=\"");
    }
    envp[listen_pid_index].resize(sizeof(kListenPid) - 1 + 21, '\0');
  }
  // LISTEN_PIDFDID likewise, and last: where the kernel cannot tell, the
  // child ends the environment just before it.
  static const char kListenPidfdid[] = "LISTEN_PIDFDID=";
  if (listen_pidfdid_index >= 0) {
    if (static_cast<size_t>(listen_pidfdid_index) + 1 != envp.size() || envp[listen_pidfdid_index] != kListenPidfdid) {
      throw Napi::RangeError::New(env, "spawn plan: listenPidfdidIndex must point at \"LISTEN_PIDFDID=\", the last entry");
    }
    envp[listen_pidfdid_index].resize(sizeof(kListenPidfdid) - 1 + 21, '\0');
  }

  std::vector<char*> argv_ptrs = Pointers(argv);
  std::vector<char*> envp_ptrs = Pointers(envp);
  p.path = file.c_str();
  p.argv = argv_ptrs.data();
  p.envp = envp_ptrs.data();
  p.cwd = has_cwd ? cwd.c_str() : nullptr;
  p.listen_pid = listen_pid_index >= 0 ? &envp[listen_pid_index][sizeof(kListenPid) - 1] : nullptr;
  p.listen_pidfdid = listen_pidfdid_index >= 0 ? &envp[listen_pidfdid_index][sizeof(kListenPidfdid) - 1] : nullptr;
  p.listen_pidfdid_slot = listen_pidfdid_index >= 0 ? &envp_ptrs[listen_pidfdid_index] : nullptr;

  folk::SpawnOutcome out;
  if (folk::SpawnChild(&p, &out) == -1) throw ErrnoError(env, out.err, folk::StepName(out.step));

  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(uint32_t(0), Napi::Number::New(env, out.pid));
  result.Set(uint32_t(1), Napi::Number::New(env, out.pidfd));
  return result;
}

int FdArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "fd must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}

// pipe(): [readEnd, writeEnd], both CLOEXEC and both at 3 or above (see
// MoveAboveStdio).
Napi::Value Pipe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) == -1) throw ErrnoError(env, errno, "pipe2");
  for (int& fd : fds) {
    int moved = folk::MoveAboveStdio(fd);
    if (moved == -1) {
      int err = errno;
      close(fds[0]);
      close(fds[1]);
      throw ErrnoError(env, err, "fcntl");
    }
    fd = moved;
  }
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(uint32_t(0), Napi::Number::New(env, fds[0]));
  pair.Set(uint32_t(1), Napi::Number::New(env, fds[1]));
  return pair;
}

// close(fd): undefined. For the pipe ends pipe() made: fs.closeSync on an fd
// that fs did not open makes a worker thread print a warning.
Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0);
  if (close(fd) == -1 && errno != EINTR) throw ErrnoError(info.Env(), errno, "close");
  return info.Env().Undefined();
}

// getCloexec(fd): boolean
Napi::Value GetCloexec(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0);
  int flags = fcntl(fd, F_GETFD);
  if (flags == -1) throw ErrnoError(info.Env(), errno, "fcntl");
  return Napi::Boolean::New(info.Env(), (flags & FD_CLOEXEC) != 0);
}

// setCloexec(fd, on): undefined
Napi::Value SetCloexec(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0);
  if (info.Length() < 2 || !info[1].IsBoolean()) throw Napi::TypeError::New(info.Env(), "setCloexec(fd, on: boolean)");
  bool on = info[1].As<Napi::Boolean>().Value();
  int flags = fcntl(fd, F_GETFD);
  if (flags == -1) throw ErrnoError(info.Env(), errno, "fcntl");
  int next = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
  if (next != flags && fcntl(fd, F_SETFD, next) == -1) throw ErrnoError(info.Env(), errno, "fcntl");
  return info.Env().Undefined();
}

// selfPidfdInodeId(): the inode id of this process's pidfd as a decimal
// string (it may not fit a double), or null when the kernel cannot tell.
Napi::Value SelfPidfdInodeIdValue(const Napi::CallbackInfo& info) {
  uint64_t id;
  if (!folk::SelfPidfdInodeId(&id)) return info.Env().Null();
  return Napi::String::New(info.Env(), std::to_string(id));
}

// killAndReap(pid, pidfd): for a child spawn() cannot hand out after all.
Napi::Value KillAndReap(const Napi::CallbackInfo& info) {
  int pid = FdArg(info, 0);
  int pidfd = FdArg(info, 1);
  if (pid <= 0 || pidfd < 0) throw Napi::RangeError::New(info.Env(), "killAndReap(pid, pidfd)");
  folk::KillAndReap(pid, pidfd);
  return info.Env().Undefined();
}

// notifySend(address, message): bytes sent. One datagram to an AF_UNIX
// address, from a new SOCK_DGRAM socket closed right after, as libsystemd's
// sd_notify sends to $NOTIFY_SOCKET. `address` is sun_path's bytes: a path,
// or an abstract name starting with a NUL byte (lib/notify.ts reads the
// variable and builds the message). The socket is blocking, as libsystemd's:
// with the receiver's queue full, the call waits for room.
Napi::Value NotifySend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsBuffer() || !info[1].IsBuffer()) {
    throw Napi::TypeError::New(env, "notifySend(address: Buffer, message: Buffer)");
  }
  Napi::Buffer<char> address = info[0].As<Napi::Buffer<char>>();
  Napi::Buffer<char> message = info[1].As<Napi::Buffer<char>>();
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (address.Length() == 0 || address.Length() > sizeof(sa.sun_path)) {
    throw Napi::RangeError::New(env, "notifySend: the address must be 1 to 108 bytes");
  }
  memcpy(sa.sun_path, address.Data(), address.Length());
  socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.Length());
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd == -1) throw ErrnoError(env, errno, "socket");
  ssize_t sent;
  do {
    sent = sendto(fd, message.Data(), message.Length(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa), length);
  } while (sent == -1 && errno == EINTR);
  int err = errno;
  close(fd);
  if (sent == -1) throw ErrnoError(env, err, "sendto");
  return Napi::Number::New(env, static_cast<double>(sent));
}

Napi::Value GetCloneMode(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), folk::GetCloneMode());
}

Napi::Value SetCloneMode(const Napi::CallbackInfo& info) {
  int mode = FdArg(info, 0);
  if (mode < folk::kModeClone3ClearSighand || mode > folk::kModeClonePidfdOpen) {
    throw Napi::RangeError::New(info.Env(), "unknown clone mode");
  }
  folk::SetCloneMode(mode);
  return info.Env().Undefined();
}

Napi::Value GetCloseMethod(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), folk::GetCloseMethod());
}

Napi::Value SetCloseMethod(const Napi::CallbackInfo& info) {
  int method = FdArg(info, 0);
  if (method < folk::kCloseRangeCloexec || method > folk::kCloseLoop) {
    throw Napi::RangeError::New(info.Env(), "unknown close method");
  }
  folk::SetCloseMethod(method);
  return info.Env().Undefined();
}

Napi::Value SetAssumedParentPid(const Napi::CallbackInfo& info) {
  folk::SetAssumedParentPid(FdArg(info, 0));
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("spawn", Napi::Function::New(env, Spawn, "spawn"));
  exports.Set("pipe", Napi::Function::New(env, Pipe, "pipe"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("getCloexec", Napi::Function::New(env, GetCloexec, "getCloexec"));
  exports.Set("setCloexec", Napi::Function::New(env, SetCloexec, "setCloexec"));
  exports.Set("killAndReap", Napi::Function::New(env, KillAndReap, "killAndReap"));
  exports.Set("selfPidfdInodeId", Napi::Function::New(env, SelfPidfdInodeIdValue, "selfPidfdInodeId"));
  exports.Set("getCloneMode", Napi::Function::New(env, GetCloneMode, "getCloneMode"));
  exports.Set("setCloneMode", Napi::Function::New(env, SetCloneMode, "setCloneMode"));
  exports.Set("setAssumedParentPid", Napi::Function::New(env, SetAssumedParentPid, "setAssumedParentPid"));
  exports.Set("getCloseMethod", Napi::Function::New(env, GetCloseMethod, "getCloseMethod"));
  exports.Set("setCloseMethod", Napi::Function::New(env, SetCloseMethod, "setCloseMethod"));
  exports.Set("notifySend", Napi::Function::New(env, NotifySend, "notifySend"));

  Napi::Object rlimits = Napi::Object::New(env);
  rlimits.Set("as", Napi::Number::New(env, RLIMIT_AS));
  rlimits.Set("core", Napi::Number::New(env, RLIMIT_CORE));
  rlimits.Set("cpu", Napi::Number::New(env, RLIMIT_CPU));
  rlimits.Set("data", Napi::Number::New(env, RLIMIT_DATA));
  rlimits.Set("fsize", Napi::Number::New(env, RLIMIT_FSIZE));
  rlimits.Set("locks", Napi::Number::New(env, RLIMIT_LOCKS));
  rlimits.Set("memlock", Napi::Number::New(env, RLIMIT_MEMLOCK));
  rlimits.Set("msgqueue", Napi::Number::New(env, RLIMIT_MSGQUEUE));
  rlimits.Set("nice", Napi::Number::New(env, RLIMIT_NICE));
  rlimits.Set("nofile", Napi::Number::New(env, RLIMIT_NOFILE));
  rlimits.Set("nproc", Napi::Number::New(env, RLIMIT_NPROC));
  rlimits.Set("rss", Napi::Number::New(env, RLIMIT_RSS));
  rlimits.Set("rtprio", Napi::Number::New(env, RLIMIT_RTPRIO));
  rlimits.Set("rttime", Napi::Number::New(env, RLIMIT_RTTIME));
  rlimits.Set("sigpending", Napi::Number::New(env, RLIMIT_SIGPENDING));
  rlimits.Set("stack", Napi::Number::New(env, RLIMIT_STACK));
  exports.Set("RLIMITS", rlimits);
  return exports;
}

}  // namespace

NODE_API_MODULE(fd_inherit, Init)
