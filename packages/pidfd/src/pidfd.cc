// pidfds for Node. Thin on purpose: the syscalls (pidfd_open,
// pidfd_send_signal, waitid(P_PIDFD), pidfd_getfd, poll) in this file, and
// one libuv poll handle per pidfd (the Handle, handle.cc; what becomes of its
// process when its environment ends, reaper.cc). What a result means (reaped
// or peeked, cached, ESRCH after exit) is decided in lib/index.ts.
#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "handle.h"
#include "internal/errors.h"
#include "reaper.h"
#include "syscalls.h"

// pidfs (Linux 6.9): the filesystem every pidfd lives on since then.
constexpr long kPidfsMagic = 0x50494446;
// PIDFD_THREAD (Linux 6.9): a pidfd for one thread; it is O_EXCL's bit.
constexpr int kPidfdThread = O_EXCL;

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

// isThreadPidfd(pidfd: number): boolean
//
// Whether a pidfd was opened for one thread (PIDFD_THREAD, Linux 6.9): the
// kernel keeps that flag, which is O_EXCL's bit, in the file's status
// flags (open(2) never leaves O_EXCL there). A PidFd is for a process: such
// a pidfd polls readable when its thread ends, its waitid fails with
// ECHILD, and a signal reaches only that thread. false if fd is not open.
Napi::Value IsThreadPidfd(const Napi::CallbackInfo& info) {
  int fd = Int32Arg(info, 0, "isThreadPidfd(pidfd: number)");
  int flags = fd < 0 ? -1 : fcntl(fd, F_GETFL);
  return Napi::Boolean::New(info.Env(), flags != -1 && (flags & kPidfdThread) != 0);
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  pidfd::KeptLoaded();  // before any teardown can hand a pidfd to a thread (see reaper.cc)

  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen, "pidfdOpen"));
  exports.Set("sendSignal", Napi::Function::New(env, SendSignal, "sendSignal"));
  exports.Set("waitid", Napi::Function::New(env, Waitid, "waitid"));
  exports.Set("readable", Napi::Function::New(env, Readable, "readable"));
  exports.Set("getfd", Napi::Function::New(env, Getfd, "getfd"));
  exports.Set("pidfdPid", Napi::Function::New(env, PidfdPid, "pidfdPid"));
  exports.Set("isThreadPidfd", Napi::Function::New(env, IsThreadPidfd, "isThreadPidfd"));
  exports.Set("exitStatus", Napi::Function::New(env, ExitStatus, "exitStatus"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("Handle", pidfd::DefineHandle(env));
  exports.Set("CLD_EXITED", Napi::Number::New(env, CLD_EXITED));
  exports.Set("CLD_KILLED", Napi::Number::New(env, CLD_KILLED));
  exports.Set("CLD_DUMPED", Napi::Number::New(env, CLD_DUMPED));
  return exports;
}

}  // namespace

NODE_API_MODULE(pidfd, Init)
