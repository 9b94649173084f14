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
#include <string>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <memory>
#include <mutex>
#include <thread>
#include <map>
#include <set>

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

// Which file an fd refers to (device and inode), to tell whether a number
// still means the file we were given. statx rather than fstat: glibc 2.33
// gave fstat a new symbol version, and a prebuild linked against that would
// not load on glibc 2.28 to 2.32 (RHEL 8, Debian 11, Ubuntu 20.04), which
// Node 20 supports.
struct FileId {
  uint64_t dev = 0;
  uint64_t ino = 0;
  bool operator==(const FileId& o) const { return dev == o.dev && ino == o.ino; }
};

bool IdentifyFile(int fd, FileId* id) {
  struct statx sx;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_INO, &sx) != 0) return false;
  id->dev = (uint64_t{sx.stx_dev_major} << 32) | sx.stx_dev_minor;
  id->ino = sx.stx_ino;
  return true;
}

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

// ErrnoError's shape through the C API, for the event-loop callback, where
// nothing may throw: nullptr if it cannot be built (an environment being
// torn down).
napi_value ErrnoValue(napi_env env, int err, const char* syscall) {
  const char* code = uv_err_name(-err);
  std::string message = std::string(code) + ": " + uv_strerror(-err) + ", " + syscall;
  napi_value msg, code_value, errno_value, syscall_value, error;
  if (napi_create_string_utf8(env, message.c_str(), message.size(), &msg) != napi_ok ||
      napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value) != napi_ok ||
      napi_create_int32(env, -err, &errno_value) != napi_ok ||
      napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value) != napi_ok ||
      napi_create_error(env, nullptr, msg, &error) != napi_ok ||
      napi_set_named_property(env, error, "errno", errno_value) != napi_ok ||
      napi_set_named_property(env, error, "code", code_value) != napi_ok ||
      napi_set_named_property(env, error, "syscall", syscall_value) != napi_ok) {
    return nullptr;
  }
  return error;
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
// Handle: owns one pidfd and, once someone waits, a Watch: a uv_poll_t on the
// pidfd and, only if a tracer holds an exit, a uv_signal_t for SIGCHLD.
//
// Two fds for the one pidfd. The number the Handle was given is public
// (`pidfd.fd`), and a user may close it with fs.closeSync despite the
// README. Had libuv watched that number, closing it under a pending wait
// would make libuv's next epoll_ctl fail with EBADF, and libuv abort()s the
// process there. So at construction the Handle takes a private close-on-exec
// duplicate nobody else knows the number of, and every syscall and the poll
// go through it: a public number closed by hand (even reused by another
// file) neither crashes nor redirects a signal or a reap to a stranger.
//
// The public fd is closed only while it still refers to the file it did when
// the Handle took it (same st_dev and st_ino): after a close by hand the
// kernel hands the number to the next open, and closing "our" fd later, from
// close() or from the garbage collector at a time nobody chose, would close
// that stranger. On pidfs (Linux 6.9+) the inode names the process, so only
// a pidfd for the same process can pass for ours; before 6.9 every pidfd
// (and eventfd, epoll fd...) shares one anonymous inode, and the check only
// tells those from files, pipes and sockets. The private fd is always ours.
//
// Why SIGCHLD: a pidfd turns readable when its process exits, and stays
// readable. When a tracer (strace -f, gdb) holds the exit, waitid has
// nothing for us yet, and polling the pidfd again would wake the loop on
// every turn until the tracer lets go. Then the kernel signals the parent
// with SIGCHLD, so lib/index.ts watches for that instead and asks again.
// libuv lets any number of watchers share one signal, its own child_process
// watcher included.
//
// Lifetimes, because three parties can end a handle:
//  - close() from JS, or the finalizer when the JS object is collected
//    without close(): stop and uv_close the watch, close the fd;
//  - environment teardown (process exit, worker termination): an async
//    cleanup hook closes every watch still open and tells Node it is done
//    only when libuv has run the close callbacks, so a worker's loop never
//    closes with our handles on it.
// The libuv handles live in their own allocation (Watch) because libuv needs
// them until their close callbacks, which may come after the Handle is gone.

class Handle;

struct EnvData;

struct Watch {
  uv_poll_t poll;
  uv_signal_t chld;
  bool chld_inited = false;
  int open = 0;  // libuv handles not yet through their close callback
  Handle* owner = nullptr;
  EnvData* data = nullptr;
};

struct EnvData {
  std::set<Watch*> watches;  // not yet through their close callbacks
  napi_async_cleanup_hook_handle hook = nullptr;
  bool tearing_down = false;
  bool orphaned = false;  // the env is gone; the last close callback frees us
};

// Handles with reap: true, in every environment of the process, so that the
// teardown of one (a worker thread ending) can find its own. A reap: true
// process that still runs when its environment goes away could never be
// reaped by anything there again (nothing else in the process knows it), and
// would be a zombie from its exit until the process ends; teardown hands its
// pidfd to a small thread that sleeps in waitid until then. The registry is
// keyed by Handle and never dereferences an EnvData, which may be freed
// before the last Handle's finalizer; allocated once and never destroyed,
// so no exit-time destructor can race a worker tearing down.
std::mutex& ReapersLock() {
  static std::mutex* lock = new std::mutex;
  return *lock;
}
std::map<Handle*, EnvData*>& Reapers() {
  static auto* reapers = new std::map<Handle*, EnvData*>;
  return *reapers;
}

// Every Handle's private duplicate, process-wide (worker threads share the
// fd table), until it is closed. A number that is one is nobody's to hand
// a Handle: adopt() of it would have the new Handle close it, under the
// Handle whose poll watches it, and libuv aborts the process at that
// poll's next epoll_ctl (or its reaps and signals hit EBADF, or a stranger
// that reused the number). So a new Handle refuses it. Closed and unlisted
// under one lock, so a Handle made meanwhile sees either a duplicate that
// is still ours or a number that is free. Never destroyed, like Reapers():
// ReapLater's threads close theirs at any time, process exit included.
std::mutex& PrivateLock() {
  static std::mutex* lock = new std::mutex;
  return *lock;
}
std::set<int>& PrivateFds() {
  static auto* fds = new std::set<int>;
  return *fds;
}

// The private duplicate of `fd` for a new Handle (throws if there is none).
int DupPrivate(Napi::Env env, int fd) {
  std::lock_guard<std::mutex> guard(PrivateLock());
  if (PrivateFds().count(fd) != 0) {
    Napi::TypeError e = Napi::TypeError::New(
        env, "The \"fd\" argument is invalid: fd " + std::to_string(fd) +
                 " is the private duplicate an open PidFd works through, not a pidfd of yours");
    e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_VALUE"));
    throw e;
  }
  int io = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (io == -1) throw ErrnoError(env, errno, "fcntl");
  PrivateFds().insert(io);
  return io;
}

void ClosePrivate(int io) {
  std::lock_guard<std::mutex> guard(PrivateLock());
  ::close(io);
  PrivateFds().erase(io);
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
    ClosePrivate(fd);
    return;
  }
  if (!KeptLoaded()) {
    ClosePrivate(fd);
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
      ClosePrivate(fd);
    }).detach();
  } catch (...) {
    ClosePrivate(fd);  // no thread to be had: nothing more can be done for it
  }
}

void FinishTeardownIfDone(EnvData* data) {
  if (!data->watches.empty()) return;
  if (data->hook) {
    napi_remove_async_cleanup_hook(data->hook);
    data->hook = nullptr;
  }
  if (data->orphaned) delete data;
}

void OnWatchClosed(uv_handle_t* h) {
  Watch* w = static_cast<Watch*>(h->data);
  if (--w->open > 0) return;
  EnvData* data = w->data;
  data->watches.erase(w);
  delete w;
  if (data->tearing_down || data->orphaned) FinishTeardownIfDone(data);
}

void CloseWatch(Watch* w) {
  w->owner = nullptr;
  // uv_close stops the watchers synchronously, so the fd may be closed right
  // after; only the memory has to wait for the callbacks.
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), OnWatchClosed);
  if (w->chld_inited) uv_close(reinterpret_cast<uv_handle_t*>(&w->chld), OnWatchClosed);
}

class Handle : public Napi::ObjectWrap<Handle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Handle",
                       {
                           InstanceMethod<&Handle::Start>("start"),
                           InstanceMethod<&Handle::StartChild>("startChild"),
                           InstanceMethod<&Handle::Stop>("stop"),
                           InstanceMethod<&Handle::SetRef>("ref"),
                           InstanceMethod<&Handle::SetUnref>("unref"),
                           InstanceMethod<&Handle::Close>("close"),
                           InstanceMethod<&Handle::Io>("io"),
                       });
  }

  // new Handle(fd: number): takes ownership of fd, after making the private
  // duplicate (EMFILE, EBADF: it throws and fd stays the caller's). Never
  // another Handle's private duplicate (see PrivateFds).
  explicit Handle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Handle>(info) {
    int fd = Int32Arg(info, 0, "new Handle(fd: number, reap: boolean)");
    if (fd < 0) throw Napi::RangeError::New(info.Env(), "new Handle(fd: number, reap: boolean): fd must be >= 0");
    if (info.Length() < 2 || !info[1].IsBoolean()) throw Napi::TypeError::New(info.Env(), "new Handle(fd: number, reap: boolean)");
    bool reap = info[1].As<Napi::Boolean>().Value();
    int io = DupPrivate(info.Env(), fd);
    fd_ = fd;
    io_ = io;
    data_ = static_cast<EnvData*>(info.Env().GetInstanceData<EnvData>());
    if (reap) {
      std::lock_guard<std::mutex> guard(ReapersLock());
      Reapers().emplace(this, data_);
      reaper_ = true;
    }
    identified_ = IdentifyFile(fd_, &file_);
  }

  ~Handle() override { Release(); }

  // Called by the teardown hook: the watch is closed there, the fd stays ours.
  void DetachWatch() {
    watch_ = nullptr;
    callback_.Reset();
  }

  // Called by the teardown hook, with ReapersLock held and after the watches
  // are closed (so no poll uses the private fd any more): the private fd
  // goes to ReapLater, which reaps the process whenever it exits.
  void HandOffReap() {
    reaper_ = false;
    if (io_ < 0) return;
    int fd = io_;
    io_ = -1;
    ReapLater(fd);
  }

 private:
  // start(onReady: (err: Error | null) => void): watch the pidfd for POLLIN
  // (and no longer for SIGCHLD). While watching, the JS object and callback
  // are held strongly, like any active Node handle; stop() and close() let
  // them go.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Arm(info, "start(onReady: function)", "uv_poll_start")) return env.Undefined();
    if (watch_->chld_inited) uv_signal_stop(&watch_->chld);
    int rc = uv_poll_start(&watch_->poll, UV_READABLE, OnReady);
    if (rc != 0) throw ErrnoError(env, -rc, "uv_poll_start");
    return env.Undefined();
  }

  // startChild(onReady): watch for SIGCHLD instead of the pidfd, which stays
  // readable while a tracer holds the exit; onReady(null) on each SIGCHLD.
  Napi::Value StartChild(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Arm(info, "startChild(onReady: function)", "uv_signal_start")) return env.Undefined();
    if (!watch_->chld_inited) {
      int rc = uv_signal_init(watch_->poll.loop, &watch_->chld);
      if (rc != 0) throw ErrnoError(env, -rc, "uv_signal_init");
      watch_->chld.data = watch_;
      watch_->chld_inited = true;
      watch_->open++;
      if (!ref_) uv_unref(reinterpret_cast<uv_handle_t*>(&watch_->chld));
    }
    uv_poll_stop(&watch_->poll);
    int rc = uv_signal_start(&watch_->chld, OnSignal, SIGCHLD);
    if (rc != 0) throw ErrnoError(env, -rc, "uv_signal_start");
    return env.Undefined();
  }

  // What start and startChild share: check, make the Watch on first use,
  // take the callback, hold the object. false during teardown (nothing
  // starts then).
  bool Arm(const Napi::CallbackInfo& info, const char* usage, const char* syscall) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, usage);
    if (io_ < 0) throw ErrnoError(env, EBADF, syscall);
    if (data_->tearing_down) return false;
    if (!watch_) {
      uv_loop_t* loop = nullptr;
      if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no libuv loop");
      Watch* w = new Watch{};
      int rc = uv_poll_init(loop, &w->poll, io_);
      if (rc != 0) {
        delete w;
        throw ErrnoError(env, -rc, "uv_poll_init");
      }
      w->poll.data = w;
      w->open = 1;
      w->owner = this;
      w->data = data_;
      data_->watches.insert(w);
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

  // io(): the private duplicate every syscall goes through; -1 once closed.
  Napi::Value Io(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), io_); }

  bool StillOurs() const {
    if (fd_ < 0) return false;
    if (!identified_) return true;
    FileId now;
    return IdentifyFile(fd_, &now) && now == file_;
  }

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

  // Idempotent; safe from the finalizer.
  void Release() {
    if (reaper_) {
      std::lock_guard<std::mutex> guard(ReapersLock());
      Reapers().erase(this);
      reaper_ = false;
    }
    if (watch_) {
      CloseWatch(watch_);
      watch_ = nullptr;
    }
    if (io_ >= 0) {
      ClosePrivate(io_);
      io_ = -1;
    }
    if (fd_ >= 0) {
      // Not ours any more: someone closed it by hand; leave the number alone.
      if (StillOurs()) ::close(fd_);
      fd_ = -1;
    }
  }

  static void OnReady(uv_poll_t* h, int status, int /*events*/) {
    Watch* w = static_cast<Watch*>(h->data);
    if (w->owner) w->owner->Fire(status);
  }

  static void OnSignal(uv_signal_t* h, int /*signum*/) {
    Watch* w = static_cast<Watch*>(h->data);
    if (w->owner) w->owner->Fire(0);
  }

  // Calls into JavaScript from the event loop, through the C API with every
  // status checked: while a worker is being torn down (process.exit() in a
  // wait's callback, with more pidfds due in the same loop turn, or
  // worker.terminate()) every call into JavaScript fails with no exception
  // to show, and node-addon-api's throwing wrappers (MakeCallback, Set on
  // an error object) turn that into Napi::Error::New, which cannot build
  // its error then either and ends the whole process with a fatal error.
  void Fire(int status) {
    if (callback_.IsEmpty()) return;
    napi_env env = Env();
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value arg = nullptr;
    if (status < 0) {
      arg = ErrnoValue(env, -status, "uv_poll");
    } else {
      napi_get_null(env, &arg);
    }
    napi_value recv = nullptr;
    napi_value fn = nullptr;
    napi_value result;
    napi_ref self = static_cast<const Napi::Reference<Napi::Object>&>(*this);
    if (arg != nullptr && napi_get_reference_value(env, self, &recv) == napi_ok && recv != nullptr &&
        napi_get_reference_value(env, callback_, &fn) == napi_ok && fn != nullptr &&
        // MakeCallback, not Call: runs the microtask queue and nextTicks after,
        // so promises settled by the callback resolve in this same turn.
        napi_make_callback(env, *async_, recv, fn, 1, &arg, &result) != napi_ok) {
      bool pending = false;
      napi_value err = nullptr;
      if (napi_is_exception_pending(env, &pending) == napi_ok && pending &&
          napi_get_and_clear_last_exception(env, &err) == napi_ok && err != nullptr) {
        napi_fatal_exception(env, err);
      }
    }
    napi_close_handle_scope(env, scope);
  }

  int fd_ = -1;  // the public number
  int io_ = -1;  // the private duplicate
  FileId file_;
  bool identified_ = false;  // IdentifyFile worked when the Handle took the fd
  bool reaper_ = false;      // reap: true, and in Reapers()
  bool ref_ = true;
  bool active_ = false;
  Watch* watch_ = nullptr;
  EnvData* data_ = nullptr;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> async_;
};

void OnTeardown(napi_async_cleanup_hook_handle /*handle*/, void* arg) {
  EnvData* data = static_cast<EnvData*>(arg);
  data->tearing_down = true;
  // CloseWatch leaves each Watch in the set until its close callbacks run,
  // which is never during this loop.
  for (Watch* w : data->watches) {
    if (w->owner) {
      w->owner->DetachWatch();
      CloseWatch(w);
    }
  }
  {
    std::lock_guard<std::mutex> guard(ReapersLock());
    auto& reapers = Reapers();
    for (auto it = reapers.begin(); it != reapers.end();) {
      if (it->second == data) {
        it->first->HandOffReap();
        it = reapers.erase(it);
      } else {
        ++it;
      }
    }
  }
  FinishTeardownIfDone(data);
}

void FreeEnvData(Napi::Env, EnvData* data) {
  // Close callbacks still pending (only if a finalizer ran after our teardown
  // hook) free the data themselves.
  if (data->watches.empty()) {
    delete data;
  } else {
    data->orphaned = true;
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  KeptLoaded();  // before any teardown can hand a pidfd to a thread (see StayLoaded)
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
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("Handle", Handle::Define(env));
  exports.Set("CLD_EXITED", Napi::Number::New(env, CLD_EXITED));
  exports.Set("CLD_KILLED", Napi::Number::New(env, CLD_KILLED));
  exports.Set("CLD_DUMPED", Napi::Number::New(env, CLD_DUMPED));
  return exports;
}

}  // namespace

NODE_API_MODULE(pidfd, Init)
