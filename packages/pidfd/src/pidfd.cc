// pidfds for Node. Thin on purpose: the syscalls (pidfd_open,
// pidfd_send_signal, waitid(P_PIDFD), pidfd_getfd, poll) and one libuv poll
// handle per pidfd. What a result means (reaped or peeked, cached, ESRCH after
// exit) is decided in lib/index.ts.
#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <memory>
#include <unordered_set>

// Older libc headers lack the numbers; they are the same on every Linux
// architecture because they were allocated after the syscall table unification.
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

// pidfs (Linux 6.9): the filesystem every pidfd lives on since then.
constexpr long kPidfsMagic = 0x50494446;

// struct pidfd_info as PIDFD_GET_INFO (Linux 6.13) first defined it; the
// kernel accepts this size from newer callers' older builds and vice versa.
struct PidfdInfoV0 {
  uint64_t mask;
  uint64_t cgroupid;
  uint32_t pid;
  uint32_t tgid;
  uint32_t ppid;
  uint32_t ids[8];  // ruid rgid euid egid suid sgid fsuid fsgid
  uint32_t spare0;
};
static_assert(sizeof(PidfdInfoV0) == 64, "PIDFD_INFO_SIZE_VER0");
constexpr uint64_t kPidfdInfoPid = 1;  // PIDFD_INFO_PID
constexpr unsigned long kPidfdGetInfo = _IOWR(0xFF, 11, PidfdInfoV0);

namespace {

// An Error shaped like Node's (fs, net): "ESRCH: no such process,
// pidfd_send_signal" with code, errno (negative, as libuv and Node report it)
// and syscall. lib/index.ts adds what was being done and, for ENOSYS, the
// kernel the call needs.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall) {
  const char* code = uv_err_name(-err);
  std::string message = uv_strerror(-err);
  // libuv names only the errnos it uses itself; waitid's ECHILD is not one.
  if (err == ECHILD) {
    code = "ECHILD";
    message = "no child processes";
  }
  Napi::Error e = Napi::Error::New(env, std::string(code) + ": " + message + ", " + syscall);
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("code", Napi::String::New(env, code));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

int Int32Arg(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), usage);
  return info[i].As<Napi::Number>().Int32Value();
}

// pidfdOpen(pid: number): number. pidfd_open(2) always sets O_CLOEXEC.
Napi::Value PidfdOpen(const Napi::CallbackInfo& info) {
  int pid = Int32Arg(info, 0, "pidfdOpen(pid: number)");
  long fd = syscall(SYS_pidfd_open, pid, 0);
  if (fd == -1) throw ErrnoError(info.Env(), errno, "pidfd_open");
  return Napi::Number::New(info.Env(), static_cast<double>(fd));
}

// sendSignal(pidfd: number, signal: number): void
Napi::Value SendSignal(const Napi::CallbackInfo& info) {
  const char* usage = "sendSignal(pidfd: number, signal: number)";
  int fd = Int32Arg(info, 0, usage);
  int sig = Int32Arg(info, 1, usage);
  if (syscall(SYS_pidfd_send_signal, fd, sig, nullptr, 0) == -1) {
    throw ErrnoError(info.Env(), errno, "pidfd_send_signal");
  }
  return info.Env().Undefined();
}

double Micros(const struct timeval& tv) {
  return static_cast<double>(tv.tv_sec) * 1e6 + static_cast<double>(tv.tv_usec);
}

// waitid(pidfd: number, noWait: boolean): RawExit | null
//
// waitid(P_PIDFD, pidfd, WEXITED | WNOHANG [| WNOWAIT]) through the raw
// syscall, which (unlike the libc wrapper) also fills in rusage. Never blocks:
// callers learn that the process exited from pidfd readiness first. null means
// "nothing to collect yet".
Napi::Value Waitid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Int32Arg(info, 0, "waitid(pidfd: number, noWait: boolean)");
  if (info.Length() < 2 || !info[1].IsBoolean()) throw Napi::TypeError::New(env, "waitid(pidfd: number, noWait: boolean)");
  int flags = WEXITED | WNOHANG | (info[1].As<Napi::Boolean>().Value() ? WNOWAIT : 0);

  siginfo_t si = {};
  struct rusage ru = {};
  if (syscall(SYS_waitid, P_PIDFD, fd, &si, flags, &ru) == -1) {
    int err = errno;
    // Before 5.4 the kernel does not know P_PIDFD and calls the idtype
    // invalid; our flags are fixed and valid, so EINVAL can only mean that.
    if (err == EINVAL) err = ENOSYS;
    throw ErrnoError(env, err, "waitid");
  }
  if (si.si_pid == 0) return env.Null();

  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, si.si_pid));
  out.Set("code", Napi::Number::New(env, si.si_code));
  out.Set("status", Napi::Number::New(env, si.si_status));
  Napi::Object r = Napi::Object::New(env);
  r.Set("utimeUs", Napi::Number::New(env, Micros(ru.ru_utime)));
  r.Set("stimeUs", Napi::Number::New(env, Micros(ru.ru_stime)));
  r.Set("maxrss", Napi::Number::New(env, static_cast<double>(ru.ru_maxrss)));
  r.Set("minflt", Napi::Number::New(env, static_cast<double>(ru.ru_minflt)));
  r.Set("majflt", Napi::Number::New(env, static_cast<double>(ru.ru_majflt)));
  r.Set("inblock", Napi::Number::New(env, static_cast<double>(ru.ru_inblock)));
  r.Set("oublock", Napi::Number::New(env, static_cast<double>(ru.ru_oublock)));
  r.Set("nvcsw", Napi::Number::New(env, static_cast<double>(ru.ru_nvcsw)));
  r.Set("nivcsw", Napi::Number::New(env, static_cast<double>(ru.ru_nivcsw)));
  out.Set("rusage", r);
  return out;
}

// readable(pidfd: number, timeoutMs: number): boolean
//
// poll(2) for POLLIN: a pidfd becomes readable once its process has exited.
// timeoutMs 0 asks now; -1 blocks the calling thread (waitSync only).
Napi::Value Readable(const Napi::CallbackInfo& info) {
  const char* usage = "readable(pidfd: number, timeoutMs: number)";
  int fd = Int32Arg(info, 0, usage);
  int timeout = Int32Arg(info, 1, usage);
  struct pollfd p = {fd, POLLIN, 0};
  int n;
  // A signal handler interrupting a blocking poll is not an answer; ask again.
  do n = poll(&p, 1, timeout);
  while (n == -1 && errno == EINTR);
  if (n == -1) throw ErrnoError(info.Env(), errno, "poll");
  if (p.revents & POLLNVAL) throw ErrnoError(info.Env(), EBADF, "poll");
  return Napi::Boolean::New(info.Env(), n > 0);
}

// pidfdPid(fd: number): number
//
// The pid a pidfd refers to, when the kernel can say so cheaply: the fd is on
// pidfs (fstatfs, so the ioctl never reaches another file's driver) and
// PIDFD_GET_INFO answers. -1 for everything else (not a pidfd, not open, an
// older kernel, a process already reaped or outside our pid namespace):
// lib/index.ts then reads /proc/self/fdinfo, which tells those apart.
Napi::Value PidfdPid(const Napi::CallbackInfo& info) {
  int fd = Int32Arg(info, 0, "pidfdPid(fd: number)");
  struct statfs fs;
  PidfdInfoV0 pi = {};
  pi.mask = kPidfdInfoPid;
  if (fd < 0 || fstatfs(fd, &fs) == -1 || static_cast<long>(fs.f_type) != kPidfsMagic ||
      ioctl(fd, kPidfdGetInfo, &pi) == -1 || (pi.mask & kPidfdInfoPid) == 0 || pi.pid == 0 ||
      pi.pid > 0x7fffffffU) {
    return Napi::Number::New(info.Env(), -1);
  }
  return Napi::Number::New(info.Env(), static_cast<double>(pi.pid));
}

// getfd(pidfd: number, targetFd: number): number. The new fd is always
// O_CLOEXEC (the kernel sets it).
Napi::Value Getfd(const Napi::CallbackInfo& info) {
  const char* usage = "getfd(pidfd: number, targetFd: number)";
  int pidfd = Int32Arg(info, 0, usage);
  int target = Int32Arg(info, 1, usage);
  long fd = syscall(SYS_pidfd_getfd, pidfd, target, 0);
  if (fd == -1) throw ErrnoError(info.Env(), errno, "pidfd_getfd");
  return Napi::Number::New(info.Env(), static_cast<double>(fd));
}

// ---------------------------------------------------------------------------
// Handle: owns one pidfd and, once someone waits, one uv_poll_t watching it.
//
// The fd is closed only while it still refers to the file it did when the
// Handle took it (same st_dev and st_ino). The number is public, and a user
// may close it with fs.closeSync despite the README: the kernel then hands
// the number to the next open, and closing "our" fd later, from close() or
// from the garbage collector at a time nobody chose, would close that
// stranger. On pidfs (Linux 6.9+) the inode names the process, so only a
// pidfd for the same process can pass for ours; before 6.9 every pidfd (and
// eventfd, epoll fd...) shares one anonymous inode, and the check only tells
// those from files, pipes and sockets.
//
// Lifetimes, because three parties can end a handle:
//  - close() from JS, or the finalizer when the JS object is collected
//    without close(): stop and uv_close the poll, close the fd;
//  - environment teardown (process exit, worker termination): an async
//    cleanup hook closes every poll still open and tells Node it is done only
//    when libuv has run the close callbacks, so a worker's loop never closes
//    with our handles on it.
// The uv_poll_t lives in its own allocation (Poll) because libuv needs it
// until the close callback, which may come after the Handle is gone.

class Handle;

struct EnvData;

struct Poll {
  uv_poll_t uv;  // first member: a uv_handle_t* is a Poll*
  Handle* owner;
  EnvData* data;
};

struct EnvData {
  std::unordered_set<Poll*> polls;  // not yet through their close callback
  napi_async_cleanup_hook_handle hook = nullptr;
  bool tearing_down = false;
  bool orphaned = false;  // the env is gone; the last close callback frees us
};

void FinishTeardownIfDone(EnvData* data) {
  if (!data->polls.empty()) return;
  if (data->hook) {
    napi_remove_async_cleanup_hook(data->hook);
    data->hook = nullptr;
  }
  if (data->orphaned) delete data;
}

void OnPollClosed(uv_handle_t* h) {
  Poll* p = reinterpret_cast<Poll*>(h);
  EnvData* data = p->data;
  data->polls.erase(p);
  delete p;
  if (data->tearing_down || data->orphaned) FinishTeardownIfDone(data);
}

void ClosePoll(Poll* p) {
  p->owner = nullptr;
  // uv_close stops the watcher synchronously, so the fd may be closed right
  // after; only the memory has to wait for the callback.
  uv_close(reinterpret_cast<uv_handle_t*>(&p->uv), OnPollClosed);
}

class Handle : public Napi::ObjectWrap<Handle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Handle",
                       {
                           InstanceMethod<&Handle::Start>("start"),
                           InstanceMethod<&Handle::Stop>("stop"),
                           InstanceMethod<&Handle::SetRef>("ref"),
                           InstanceMethod<&Handle::SetUnref>("unref"),
                           InstanceMethod<&Handle::Close>("close"),
                           InstanceMethod<&Handle::Owns>("owns"),
                       });
  }

  // new Handle(fd: number): takes ownership of fd.
  explicit Handle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Handle>(info) {
    fd_ = Int32Arg(info, 0, "new Handle(fd: number)");
    if (fd_ < 0) throw Napi::RangeError::New(info.Env(), "new Handle(fd: number): fd must be >= 0");
    data_ = static_cast<EnvData*>(info.Env().GetInstanceData<EnvData>());
    struct stat st;
    if (fstat(fd_, &st) == 0) {
      dev_ = st.st_dev;
      ino_ = st.st_ino;
      identified_ = true;
    }
  }

  ~Handle() override { Release(); }

  // Called by the teardown hook: the poll is closed there, the fd stays ours.
  void DetachPoll() {
    poll_ = nullptr;
    callback_.Reset();
  }

 private:
  // start(onReady: (err: Error | null) => void): begin watching for POLLIN.
  // While watching, the JS object and callback are held strongly, like any
  // active Node handle; stop() and close() let them go.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, "start(onReady: function)");
    if (fd_ < 0) throw ErrnoError(env, EBADF, "uv_poll_start");
    if (data_->tearing_down) return env.Undefined();
    if (!poll_) {
      uv_loop_t* loop = nullptr;
      if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no libuv loop");
      Poll* p = new Poll{};
      int rc = uv_poll_init(loop, &p->uv, fd_);
      if (rc != 0) {
        delete p;
        throw ErrnoError(env, -rc, "uv_poll_init");
      }
      p->owner = this;
      p->data = data_;
      p->uv.data = p;
      data_->polls.insert(p);
      poll_ = p;
      if (!ref_) uv_unref(reinterpret_cast<uv_handle_t*>(&poll_->uv));
    }
    callback_ = Napi::Persistent(info[0].As<Napi::Function>());
    int rc = uv_poll_start(&poll_->uv, UV_READABLE, OnReady);
    if (rc != 0) throw ErrnoError(env, -rc, "uv_poll_start");
    if (!active_) {
      active_ = true;
      Ref();
    }
    if (!async_) async_ = std::make_unique<Napi::AsyncContext>(env, "PIDFDWAIT");
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    Deactivate();
    return info.Env().Undefined();
  }

  Napi::Value SetRef(const Napi::CallbackInfo& info) {
    ref_ = true;
    if (poll_) uv_ref(reinterpret_cast<uv_handle_t*>(&poll_->uv));
    return info.Env().Undefined();
  }

  Napi::Value SetUnref(const Napi::CallbackInfo& info) {
    ref_ = false;
    if (poll_) uv_unref(reinterpret_cast<uv_handle_t*>(&poll_->uv));
    return info.Env().Undefined();
  }

  // owns(): the fd is open and still refers to the file it did at first.
  Napi::Value Owns(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), StillOurs()); }

  bool StillOurs() const {
    if (fd_ < 0) return false;
    if (!identified_) return true;
    struct stat st;
    return fstat(fd_, &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Deactivate();
    Release();
    return info.Env().Undefined();
  }

  void Deactivate() {
    if (poll_) uv_poll_stop(&poll_->uv);
    callback_.Reset();
    if (active_) {
      active_ = false;
      Unref();
    }
  }

  // Idempotent; safe from the finalizer.
  void Release() {
    if (poll_) {
      ClosePoll(poll_);
      poll_ = nullptr;
    }
    if (fd_ >= 0) {
      // Not ours any more: someone closed it by hand; leave the number alone.
      if (StillOurs()) ::close(fd_);
      fd_ = -1;
    }
  }

  static void OnReady(uv_poll_t* h, int status, int /*events*/) {
    Poll* p = static_cast<Poll*>(h->data);
    if (p->owner) p->owner->Fire(status);
  }

  void Fire(int status) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (callback_.IsEmpty()) return;
    Napi::Value arg = status < 0 ? ErrnoError(env, -status, "uv_poll").Value() : env.Null();
    try {
      // MakeCallback, not Call: runs the microtask queue and nextTicks after,
      // so promises settled by the callback resolve in this same turn.
      callback_.MakeCallback(Value(), {arg}, *async_);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
  }

  int fd_ = -1;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  bool identified_ = false;  // fstat worked when the Handle took the fd
  bool ref_ = true;
  bool active_ = false;
  Poll* poll_ = nullptr;
  EnvData* data_ = nullptr;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> async_;
};

void OnTeardown(napi_async_cleanup_hook_handle /*handle*/, void* arg) {
  EnvData* data = static_cast<EnvData*>(arg);
  data->tearing_down = true;
  for (Poll* p : data->polls) {
    if (p->owner) {
      p->owner->DetachPoll();
      ClosePoll(p);
    }
  }
  FinishTeardownIfDone(data);
}

void FreeEnvData(Napi::Env, EnvData* data) {
  // Close callbacks still pending (only if a finalizer ran after our teardown
  // hook) free the data themselves.
  if (data->polls.empty()) {
    delete data;
  } else {
    data->orphaned = true;
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  EnvData* data = new EnvData();
  env.SetInstanceData<EnvData, FreeEnvData>(data);
  napi_status s = napi_add_async_cleanup_hook(env, OnTeardown, data, &data->hook);
  if (s != napi_ok) throw Napi::Error::New(env, "napi_add_async_cleanup_hook failed");

  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen, "pidfdOpen"));
  exports.Set("sendSignal", Napi::Function::New(env, SendSignal, "sendSignal"));
  exports.Set("waitid", Napi::Function::New(env, Waitid, "waitid"));
  exports.Set("readable", Napi::Function::New(env, Readable, "readable"));
  exports.Set("getfd", Napi::Function::New(env, Getfd, "getfd"));
  exports.Set("pidfdPid", Napi::Function::New(env, PidfdPid, "pidfdPid"));
  exports.Set("Handle", Handle::Define(env));
  exports.Set("CLD_EXITED", Napi::Number::New(env, CLD_EXITED));
  exports.Set("CLD_KILLED", Napi::Number::New(env, CLD_KILLED));
  exports.Set("CLD_DUMPED", Napi::Number::New(env, CLD_DUMPED));
  return exports;
}

}  // namespace

NODE_API_MODULE(pidfd, Init)
