// The fds a native handle owns (handles.h): the number it was handed, and
// the private duplicate it works through. See errors.h for how this
// directory reaches each package.
//
// The number it was handed is public (PidFd's and FdSocket's `fd`), and a
// user may close it with fs.closeSync whatever the README says. Had libuv
// watched that number, closing it under a pending poll would make libuv's
// next epoll_ctl fail with EBADF, and libuv abort()s the process there. So
// the object takes a private close-on-exec duplicate nobody else knows the
// number of (DupPrivate), and every syscall and the poll go through it: a
// public number closed by hand (even reused by another file) neither
// crashes the process nor redirects a call to a stranger.
//
// The public number is closed later only while it still refers to the file
// it did when the object took it (PublicFd: the same open file description
// as the private duplicate, by kcmp): after a close by hand the kernel hands the number to the next open, and closing it
// from close() or from the garbage collector at a time nobody chose would
// close that stranger.
//
// Every private duplicate is listed process-wide, since worker threads share
// the fd table. Such a number is nobody's to hand to a new object: that one
// would close it at close(), under the object whose poll watches it, and
// libuv aborts the process at that poll's next epoll_ctl (or its calls hit
// EBADF, or a stranger that reused the number). DupPrivate refuses it.
#pragma once

#include "errors.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <set>
#include <string>

// Unlike errors.h, in a named namespace, at hidden visibility: an addon
// whose handle is spread over several .cc files (pidfd's Handle and its
// reaper, scm-rights' Poller) must have one list of private duplicates
// (and, in handles.h, one EnvResources type) across them, which an unnamed
// namespace would give each file its own copy of. Hidden, so nothing here
// is exported from the .node, and two of our addons in one process still
// never share a static.
#pragma GCC visibility push(hidden)

namespace folk {

struct FileId {
  uint64_t dev = 0;
  uint64_t ino = 0;
  bool operator==(const FileId& o) const { return dev == o.dev && ino == o.ino; }
};

inline bool IdentifyFile(int fd, FileId* id) {
#ifdef __GLIBC__
  struct statx sx;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_INO, &sx) != 0) return false;
  id->dev = (uint64_t{sx.stx_dev_major} << 32) | sx.stx_dev_minor;
  id->ino = sx.stx_ino;
#else
  struct stat st;
  if (fstat(fd, &st) != 0) return false;
  id->dev = static_cast<uint64_t>(st.st_dev);
  id->ino = static_cast<uint64_t>(st.st_ino);
#endif
  return true;
}

// The list of private duplicates and its lock. A pthread mutex, statically
// initialised and never destroyed: pidfd's reaper threads close theirs at
// any moment, process exit included, when a C++ mutex's destructor could
// already have run. The set exists only while it has members.
inline pthread_mutex_t* PrivateLock() {
  static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  return &lock;
}

inline std::set<int>*& PrivateFds() {
  static std::set<int>* fds = nullptr;
  return fds;
}

class PrivateGuard {
 public:
  PrivateGuard() { pthread_mutex_lock(PrivateLock()); }
  ~PrivateGuard() { pthread_mutex_unlock(PrivateLock()); }
  PrivateGuard(const PrivateGuard&) = delete;
  PrivateGuard& operator=(const PrivateGuard&) = delete;
};

// The private duplicate of `fd` for a new object of kind `owner` ("PidFd"),
// listed. Throws with `fd` still the caller's: an errno Error (EMFILE...),
// or a TypeError ERR_INVALID_ARG_VALUE when `fd` is itself an open object's
// private duplicate, in any thread; `expected` says what `fd` should have
// been ("a pidfd").
inline int DupPrivate(Napi::Env env, int fd, const char* owner, const char* expected) {
  PrivateGuard guard;
  std::set<int>*& fds = PrivateFds();
  if (fds != nullptr && fds->count(fd) != 0) {
    Napi::TypeError e = Napi::TypeError::New(env, "The \"fd\" argument is invalid: fd " + std::to_string(fd) +
                                                      " is the private duplicate an open " + owner +
                                                      " works through, not " + expected + " of yours");
    e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_VALUE"));
    throw e;
  }
  // At 3 or above: a process that closed 0-2 would otherwise find the
  // duplicate there, where Node takes whatever it finds for its lazy
  // process.stdin/stdout/stderr (a pidfd or socket at fd 2 breaks
  // console.error).
  int io = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (io == -1) throw ErrnoError(env, errno, "fcntl");
  try {
    if (fds == nullptr) fds = new std::set<int>;
    fds->insert(io);
  } catch (...) {
    ::close(io);
    throw;
  }
  return io;
}

// Closed and unlisted under the one lock, so a new object meanwhile sees
// either a duplicate still in use or a free number. From any thread.
inline void ClosePrivate(int io) {
  PrivateGuard guard;
  ::close(io);
  std::set<int>*& fds = PrivateFds();
  if (fds == nullptr) return;
  fds->erase(io);
  if (fds->empty()) {
    delete fds;
    fds = nullptr;
  }
}

// Whether `a` and `b` are one open file description (the one a dup() of
// the other shares): 1 or 0; -1 where kcmp(2) cannot say (a kernel built
// without CONFIG_KCMP, or a seccomp filter such as Docker's default, which
// allows kcmp only with CAP_SYS_PTRACE). A number not open is not the same.
inline int SameDescription(int a, int b) {
  constexpr int kKcmpFile = 0;  // KCMP_FILE, <linux/kcmp.h>
  long r = syscall(SYS_kcmp, getpid(), getpid(), kKcmpFile, a, b);
  if (r == 0) return 1;
  if (r > 0 || errno == EBADF) return 0;
  return -1;
}

// The number an object was handed, closed only while it still refers to
// the file it did (see the top). kcmp tells that exactly, against the
// object's private duplicate, which shares its open file description.
// Without kcmp, or once the duplicate is gone (pidfd's reaper has it): by
// device and inode, which tells little for a pidfd (before Linux 6.9 every
// pidfd shares one anonymous inode with eventfds, epoll fds...; on pidfs,
// every pidfd of one process shares the process's), and never a number
// that is a private duplicate now: closing that would make its object's
// calls reach whatever file takes the number next (another process's
// pidfd: a signal to a stranger), and libuv abort at its poll's next
// epoll_ctl. Where the file cannot be identified either, it is trusted.
class PublicFd {
 public:
  void Take(int fd) {
    fd_ = fd;
    identified_ = IdentifyFile(fd, &file_);
  }

  // close(2) it if it is still the same file; forget it either way.
  // `io`: the object's private duplicate, still open, or -1. Idempotent.
  // Under the lock of the private duplicates, so that none is made on the
  // number or closed while it is looked at.
  void Close(int io) {
    if (fd_ < 0) return;
    PrivateGuard guard;
    if (StillOurs(io)) ::close(fd_);
    fd_ = -1;
  }

 private:
  bool StillOurs(int io) const {
    int same = io >= 0 ? SameDescription(fd_, io) : -1;
    if (same >= 0) return same == 1;
    std::set<int>* privates = PrivateFds();
    if (privates != nullptr && privates->count(fd_) != 0) return false;
    FileId now;
    return !identified_ || (IdentifyFile(fd_, &now) && now == file_);
  }

  int fd_ = -1;
  FileId file_;
  bool identified_ = false;
};

}  // namespace folk

#pragma GCC visibility pop
