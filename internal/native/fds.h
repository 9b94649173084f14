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
// it did when the object took it (PublicFd, by device and inode): after a
// close by hand the kernel hands the number to the next open, and closing it
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

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
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

// The number an object was handed, closed only while it still refers to
// the same file (see the top). Where the file cannot be identified, it is
// trusted. For a pidfd before Linux 6.9 that tells little (every pidfd, and
// eventfd, epoll fd..., shares one anonymous inode); on pidfs the inode
// names the process.
class PublicFd {
 public:
  void Take(int fd) {
    fd_ = fd;
    identified_ = IdentifyFile(fd, &file_);
  }

  // close(2) it if it is still the same file; forget it either way. Idempotent.
  void Close() {
    if (fd_ < 0) return;
    FileId now;
    if (!identified_ || (IdentifyFile(fd_, &now) && now == file_)) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  FileId file_;
  bool identified_ = false;
};

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

}  // namespace folk

#pragma GCC visibility pop
