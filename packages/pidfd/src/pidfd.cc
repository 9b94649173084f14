// pidfds for Node. Thin on purpose: the syscalls (pidfd_open,
// pidfd_send_signal, waitid(P_PIDFD), pidfd_getfd, poll) and one libuv poll
// handle per pidfd. What a result means (reaped or peeked, cached, ESRCH after
// exit) is decided in lib/index.ts.
#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <thread>

#include "internal/errors.h"
#include "internal/handles.h"

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
  int32_t exit_code;  // spare0 until Linux 6.15 made it PIDFD_INFO_EXIT's wait status
};
static_assert(sizeof(PidfdInfoV0) == 64, "PIDFD_INFO_SIZE_VER0");
constexpr uint64_t kPidfdInfoPid = 1;   // PIDFD_INFO_PID
constexpr uint64_t kPidfdInfoExit = 8;  // PIDFD_INFO_EXIT (Linux 6.15)
constexpr unsigned long kPidfdGetInfo = _IOWR(0xFF, 11, PidfdInfoV0);

namespace {

using folk::ErrnoError;
using folk::Int32Arg;

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

// waitid(pidfd: number, noWait: boolean, block: boolean): RawExit | null
//
// waitid(P_PIDFD, pidfd, WEXITED [| WNOHANG] [| WNOWAIT]) through the raw
// syscall, which (unlike the libc wrapper) also fills in rusage. null means
// "nothing to collect yet": callers learn that the process exited from pidfd
// readiness first, so that happens only while a tracer (strace, gdb) holds
// the exit, which it sees before the parent does.
//
// block (waitSync only) leaves out WNOHANG and sleeps in the kernel until the
// status is ours. libuv set O_NONBLOCK on the pidfd if it was ever polled,
// and since 5.10 that turns a blocking waitid into EAGAIN; cleared for the
// call, put back after.
Napi::Value Waitid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "waitid(pidfd: number, noWait: boolean, block: boolean)";
  int fd = Int32Arg(info, 0, usage);
  if (info.Length() < 3 || !info[1].IsBoolean() || !info[2].IsBoolean()) throw Napi::TypeError::New(env, usage);
  bool block = info[2].As<Napi::Boolean>().Value();
  int flags = WEXITED | (block ? 0 : WNOHANG) | (info[1].As<Napi::Boolean>().Value() ? WNOWAIT : 0);

  int fl = block ? fcntl(fd, F_GETFL) : -1;
  if (fl != -1 && (fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  siginfo_t si = {};
  struct rusage ru = {};
  long rc;
  // A signal interrupting a blocking waitid is not an answer; ask again.
  do rc = syscall(SYS_waitid, P_PIDFD, fd, &si, flags, &ru);
  while (rc == -1 && errno == EINTR && block);
  int err = errno;
  if (fl != -1 && (fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl);
  if (rc == -1) {
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

// exitStatus(pidfd: number): number | null
//
// PIDFD_GET_INFO with PIDFD_INFO_EXIT (Linux 6.15): the wait status (as
// waitpid(2) writes it) of a process that has exited and been reaped, by
// whichever process was its parent. This is how a supervisor learns how a
// process it did not start ended. null while it runs or is still a zombie,
// and on kernels whose answer lacks PIDFD_INFO_EXIT; ENOTTY/EINVAL from
// kernels without PIDFD_GET_INFO are thrown for lib/ to read.
Napi::Value ExitStatus(const Napi::CallbackInfo& info) {
  int fd = Int32Arg(info, 0, "exitStatus(pidfd: number)");
  PidfdInfoV0 pi = {};
  pi.mask = kPidfdInfoExit;
  if (ioctl(fd, kPidfdGetInfo, &pi) == -1) {
    // ESRCH: reaped, and this kernel kept no exit information for it.
    if (errno == ESRCH) return info.Env().Null();
    throw ErrnoError(info.Env(), errno, "ioctl(PIDFD_GET_INFO)");
  }
  if ((pi.mask & kPidfdInfoExit) == 0) return info.Env().Null();
  return Napi::Number::New(info.Env(), pi.exit_code);
}

// close(fd: number): close(2), errors ignored. For the pidfd open() made when
// no Handle could take it (out of fds for the duplicate); fs.closeSync would
// warn in a worker thread about an fd fs did not open.
Napi::Value Close(const Napi::CallbackInfo& info) {
  ::close(Int32Arg(info, 0, "close(fd: number)"));
  return info.Env().Undefined();
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
// Handle: owns one pidfd (the public number it was given and a private
// duplicate, see internal/handles.h) and, once someone waits, a Watch: a
// uv_poll_t on the private duplicate and, only if a tracer holds an exit, a
// uv_signal_t for SIGCHLD. How a Handle ends, by close(), by the garbage
// collector or with its environment, is internal/handles.h's teardown
// design; what only a Handle does then (reap: true) is below.
//
// Why SIGCHLD: a pidfd turns readable when its process exits, and stays
// readable. When a tracer (strace -f, gdb) holds the exit, waitid has
// nothing for us yet, and polling the pidfd again would wake the loop on
// every turn until the tracer lets go. Then the kernel signals the parent
// with SIGCHLD, so lib/index.ts watches for that instead and asks again.
// libuv lets any number of watchers share one signal, its own child_process
// watcher included.

class Handle;

struct Watch : folk::LoopHandles {
  using LoopHandles::LoopHandles;
  uv_poll_t poll;
  uv_signal_t chld;
  bool chld_inited = false;
  Handle* owner = nullptr;  // null once the Handle let go of it
};

void CloseWatch(Watch* w) {
  w->owner = nullptr;
  // uv_close stops the watchers synchronously, so the fd may be closed right
  // after; only the memory has to wait for the callbacks.
  w->Close(&w->poll);
  if (w->chld_inited) w->Close(&w->chld);
}

// The thread ReapLater starts runs this library's code (and sleeps in it)
// after the environment that handed it the pidfd is gone, for as long as
// that process runs. Node unloads an addon (dlclose) when a worker
// environment that loaded it is torn down (never one the main thread
// loaded), and once the last reference goes, the library is unmapped: the
// thread then crashed the whole process with SIGSEGV when its process
// exited, or before it even got going. Joining the thread at teardown is no
// answer (the process may run for ever), nor is one process-wide thread
// (its code is in this library too). So the library stays loaded for the
// life of the process: one dlopen reference of our own, taken at the first
// Init and never closed, so that Node's dlclose only ever gives back its own.
//
// What to open is the name the dynamic loader gave the object this function
// lives in (dl_iterate_phdr, in glibc since 2.2.5 under one symbol version;
// dladdr and dlopen moved into libc in 2.34 under new versions, which a
// prebuild linked against would need). That is the name Node's dlopen
// loaded, however the package found the file (node-gyp-build, a static
// require of the .node file: both end in process.dlopen), so glibc finds
// the object already loaded by that name and only counts a reference.
// uv_dlopen is that dlopen, exported by Node. If the handle turns out to be
// another object (musl matches by file, and the file may have been
// replaced), it is closed again and no reference is kept.
struct LoadedObject {
  uintptr_t address;  // in: an address inside the object
  uintptr_t base = 0;  // out: where the object was loaded, and its name
  const char* name = nullptr;
};

int FindLoadedObject(struct dl_phdr_info* info, size_t, void* arg) {
  auto* obj = static_cast<LoadedObject*>(arg);
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    uintptr_t start = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && obj->address >= start && obj->address - start < ph.p_memsz) {
      obj->base = info->dlpi_addr;
      obj->name = info->dlpi_name;
      return 1;
    }
  }
  return 0;
}

bool StayLoaded() {
  LoadedObject self{reinterpret_cast<uintptr_t>(&StayLoaded)};
  if (dl_iterate_phdr(FindLoadedObject, &self) == 0 || self.name == nullptr || self.name[0] == '\0') return false;
  static uv_lib_t lib;  // never closed: that reference is the point
  if (uv_dlopen(self.name, &lib) != 0) {
    uv_dlclose(&lib);  // frees the error message
    return false;
  }
  void* sym = nullptr;
  LoadedObject opened{0};
  if (uv_dlsym(&lib, "napi_register_module_v1", &sym) == 0) {
    opened.address = reinterpret_cast<uintptr_t>(sym);
    dl_iterate_phdr(FindLoadedObject, &opened);
  }
  if (opened.name == nullptr || opened.base != self.base) {
    uv_dlclose(&lib);
    return false;
  }
  return true;
}

// Whether the library stays loaded for the life of the process; the first
// call decides, once.
bool KeptLoaded() {
  static const bool kept = StayLoaded();
  return kept;
}

// Collect the exit of the process of `fd` (a private duplicate, now ours
// alone) now if it has one, else from a detached thread once it has; the
// fd is closed either way.
// If the library could not be kept loaded (see StayLoaded), no thread,
// which could crash the process: the process is left a zombie from its
// exit until ours ends.
void ReapLater(int fd) {
  siginfo_t si = {};
  long rc = syscall(SYS_waitid, P_PIDFD, fd, &si, WEXITED | WNOHANG, nullptr);
  if (rc == -1 || si.si_pid != 0) {  // reaped now, or nothing to reap (ECHILD)
    folk::ClosePrivate(fd);
    return;
  }
  if (!KeptLoaded()) {
    folk::ClosePrivate(fd);
    return;
  }
  // libuv made the description non-blocking; a blocking waitid would say EAGAIN.
  int fl = fcntl(fd, F_GETFL);
  if (fl != -1 && (fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  try {
    std::thread([fd] {
      siginfo_t info = {};
      while (syscall(SYS_waitid, P_PIDFD, fd, &info, WEXITED, nullptr) == -1 && errno == EINTR) {
      }
      folk::ClosePrivate(fd);
    }).detach();
  } catch (...) {
    folk::ClosePrivate(fd);  // no thread to be had: nothing more can be done for it
  }
}

class Handle : public Napi::ObjectWrap<Handle>, public folk::LoopResource {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Handle",
                       {
                           InstanceMethod<&Handle::WatchPidfd>("watchPidfd"),
                           InstanceMethod<&Handle::WatchSigchld>("watchSigchld"),
                           InstanceMethod<&Handle::Stop>("stop"),
                           InstanceMethod<&Handle::SetRef>("ref"),
                           InstanceMethod<&Handle::SetUnref>("unref"),
                           InstanceMethod<&Handle::Close>("close"),
                           InstanceMethod<&Handle::PrivateFd>("privateFd"),
                       });
  }

  // new Handle(fd: number, reap: boolean): takes ownership of fd, after
  // making the private duplicate (EMFILE, EBADF: it throws and fd stays the
  // caller's). Never another Handle's private duplicate (see DupPrivate).
  explicit Handle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Handle>(info) {
    Napi::Env env = info.Env();
    const char* usage = "new Handle(fd: number, reap: boolean)";
    int fd = Int32Arg(info, 0, usage);
    if (fd < 0) throw Napi::RangeError::New(env, "new Handle(fd: number, reap: boolean): fd must be >= 0");
    if (info.Length() < 2 || !info[1].IsBoolean()) throw Napi::TypeError::New(env, usage);
    reap_ = info[1].As<Napi::Boolean>().Value();
    folk::EnvResources* resources = folk::EnvResources::Of(env);
    int io = folk::DupPrivate(env, fd, "PidFd", "a pidfd");
    try {
      resources->Join(this);
    } catch (...) {
      folk::ClosePrivate(io);
      throw;
    }
    resources_ = resources;
    io_ = io;
    fd_.Take(fd);
  }

  ~Handle() override { Release(); }

  // The environment is ending (see internal/handles.h). A reap: true
  // process that still runs could never be reaped by anything there again
  // (nothing else in the process knows it) and would be a zombie from its
  // exit until the process ends, so its private duplicate goes to
  // ReapLater, once the watch no longer polls it.
  void OnTeardown() override {
    callback_.Reset();
    if (reap_ && io_ >= 0) {
      if (watch_) {
        CloseWatch(watch_);
        watch_ = nullptr;
      }
      int fd = io_;
      io_ = -1;
      ReapLater(fd);
    }
    Release();
  }

 private:
  // watchPidfd(onReady: (err: Error | null) => void): watch the pidfd for
  // POLLIN (and no longer for SIGCHLD). While watching, the JS object and
  // callback are held strongly, like any active Node handle; stop() and
  // close() let them go.
  Napi::Value WatchPidfd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Arm(info, "watchPidfd(onReady: function)", "uv_poll_start")) return env.Undefined();
    if (watch_->chld_inited) uv_signal_stop(&watch_->chld);
    int rc = uv_poll_start(&watch_->poll, UV_READABLE, OnReady);
    if (rc != 0) throw ErrnoError(env, -rc, "uv_poll_start");
    return env.Undefined();
  }

  // watchSigchld(onReady): watch for SIGCHLD instead of the pidfd, which
  // stays readable while a tracer holds the exit; onReady(null) on each
  // SIGCHLD.
  Napi::Value WatchSigchld(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Arm(info, "watchSigchld(onReady: function)", "uv_signal_start")) return env.Undefined();
    if (!watch_->chld_inited) {
      int rc = uv_signal_init(watch_->poll.loop, &watch_->chld);
      if (rc != 0) throw ErrnoError(env, -rc, "uv_signal_init");
      watch_->Adopt(&watch_->chld);
      watch_->chld_inited = true;
      if (!ref_) uv_unref(reinterpret_cast<uv_handle_t*>(&watch_->chld));
    }
    uv_poll_stop(&watch_->poll);
    int rc = uv_signal_start(&watch_->chld, OnSignal, SIGCHLD);
    if (rc != 0) throw ErrnoError(env, -rc, "uv_signal_start");
    return env.Undefined();
  }

  // What both watches share: check, make the Watch on first use, take the
  // callback, hold the object. false during teardown (nothing starts then).
  bool Arm(const Napi::CallbackInfo& info, const char* usage, const char* syscall) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, usage);
    if (io_ < 0) throw ErrnoError(env, EBADF, syscall);
    if (resources_->tearing_down()) return false;
    if (!watch_) {
      uv_loop_t* loop = nullptr;
      if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no libuv loop");
      Watch* w = new Watch(resources_);
      int rc = uv_poll_init(loop, &w->poll, io_);
      if (rc != 0) {
        delete w;
        throw ErrnoError(env, -rc, "uv_poll_init");
      }
      w->Adopt(&w->poll);
      w->owner = this;
      watch_ = w;
      if (!ref_) uv_unref(reinterpret_cast<uv_handle_t*>(&w->poll));
    }
    callback_ = Napi::Persistent(info[0].As<Napi::Function>());
    if (!active_) {
      active_ = true;
      Ref();
    }
    if (!async_) async_ = std::make_unique<Napi::AsyncContext>(env, "PIDFDWAIT");
    return true;
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    Deactivate();
    return info.Env().Undefined();
  }

  Napi::Value SetRef(const Napi::CallbackInfo& info) {
    ref_ = true;
    ForEachHandle(uv_ref);
    return info.Env().Undefined();
  }

  Napi::Value SetUnref(const Napi::CallbackInfo& info) {
    ref_ = false;
    ForEachHandle(uv_unref);
    return info.Env().Undefined();
  }

  void ForEachHandle(void (*fn)(uv_handle_t*)) {
    if (!watch_) return;
    fn(reinterpret_cast<uv_handle_t*>(&watch_->poll));
    if (watch_->chld_inited) fn(reinterpret_cast<uv_handle_t*>(&watch_->chld));
  }

  // privateFd(): the private duplicate every syscall goes through; -1 once closed.
  Napi::Value PrivateFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), io_); }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Deactivate();
    Release();
    return info.Env().Undefined();
  }

  void Deactivate() {
    if (watch_) {
      uv_poll_stop(&watch_->poll);
      if (watch_->chld_inited) uv_signal_stop(&watch_->chld);
    }
    callback_.Reset();
    if (active_) {
      active_ = false;
      Unref();
    }
  }

  // Gives up everything: the watch, the private fd, the public fd while it
  // is still the same file; then leaves the environment's resources.
  // Idempotent; safe from the finalizer.
  void Release() {
    if (watch_) {
      CloseWatch(watch_);
      watch_ = nullptr;
    }
    if (io_ >= 0) {
      folk::ClosePrivate(io_);
      io_ = -1;
    }
    fd_.Close();
    if (resources_) {
      resources_->Leave(this);
      resources_ = nullptr;
    }
  }

  static void OnReady(uv_poll_t* h, int status, int /*events*/) {
    Watch* w = folk::LoopHandles::Of<Watch>(h);
    if (w->owner) w->owner->Fire(status);
  }

  static void OnSignal(uv_signal_t* h, int /*signum*/) {
    Watch* w = folk::LoopHandles::Of<Watch>(h);
    if (w->owner) w->owner->Fire(0);
  }

  void Fire(int status) {
    if (callback_.IsEmpty()) return;
    napi_env env = Env();
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value arg = nullptr;
    if (status < 0) {
      arg = folk::ErrnoValue(env, -status, "uv_poll");
    } else {
      napi_get_null(env, &arg);
    }
    if (arg != nullptr) {
      napi_ref self = static_cast<const Napi::Reference<Napi::Object>&>(*this);
      folk::CallFromLoop(env, *async_, self, callback_, 1, &arg);
    }
    napi_close_handle_scope(env, scope);
  }

  folk::PublicFd fd_;  // the number the Handle was given
  int io_ = -1;        // the private duplicate
  bool reap_ = false;
  bool ref_ = true;
  bool active_ = false;
  Watch* watch_ = nullptr;
  folk::EnvResources* resources_ = nullptr;  // null once released
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> async_;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  KeptLoaded();  // before any teardown can hand a pidfd to a thread (see StayLoaded)
  folk::EnvResources::Install(env);

  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen, "pidfdOpen"));
  exports.Set("sendSignal", Napi::Function::New(env, SendSignal, "sendSignal"));
  exports.Set("waitid", Napi::Function::New(env, Waitid, "waitid"));
  exports.Set("readable", Napi::Function::New(env, Readable, "readable"));
  exports.Set("getfd", Napi::Function::New(env, Getfd, "getfd"));
  exports.Set("pidfdPid", Napi::Function::New(env, PidfdPid, "pidfdPid"));
  exports.Set("exitStatus", Napi::Function::New(env, ExitStatus, "exitStatus"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("Handle", Handle::Define(env));
  exports.Set("CLD_EXITED", Napi::Number::New(env, CLD_EXITED));
  exports.Set("CLD_KILLED", Napi::Number::New(env, CLD_KILLED));
  exports.Set("CLD_DUMPED", Napi::Number::New(env, CLD_DUMPED));
  return exports;
}

}  // namespace

NODE_API_MODULE(pidfd, Init)
