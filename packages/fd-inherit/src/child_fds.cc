// The fd map, carried out in the child (see child.h for the rules this code
// keeps): the parent's fds moved to the numbers the plan asks for, and every
// other fd from 3 up closed when the plan says so. The parent decided and
// checked the map (spawn_request.cc reads it from JavaScript); nothing here
// allocates.
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "child.h"
#include "kernel_abi.h"

namespace folk {

namespace {

// The close() loop for kernels without close_range stops here (the kernel's
// default fs.nr_open).
constexpr unsigned int kCloseLoopCap = 1U << 20;

// Whether some move puts an fd at child fd number `fd`.
bool IsTarget(const ChildPlan* p, int fd) {
  for (int i = 0; i < p->nmoves; ++i) {
    if (p->moves[i].target == fd) return true;
  }
  return false;
}

// A close-on-exec copy of `source` at a number no move targets, so the
// second pass of PlaceFds can neither overwrite it nor be overwritten by it.
// Above the highest target when there is room (one call, the usual case).
// When there is none (a target at or near the fd limit, or the numbers above
// it all taken), the lowest free number: if that is a target, the copy is
// left parked there (the dup2 onto that target replaces it later) and the
// next free number is tried. Free target numbers are few, so this ends.
int DupAside(const ChildPlan* p, int source) {
  if (static_cast<long>(p->max_target) + 1 < static_cast<long>(p->fd_limit)) {
    int fd = fcntl(source, F_DUPFD_CLOEXEC, p->max_target + 1);
    if (fd != -1 || errno != EMFILE) return fd;
  }
  for (;;) {
    int fd = fcntl(source, F_DUPFD_CLOEXEC, 0);
    if (fd == -1 || !IsTarget(p, fd)) return fd;
  }
}

// Make [lo, hi] go away at execve. close_range's CLOEXEC flag (5.11) only
// marks them: the kernel closes them inside execve after the parent has
// been released, so the parent never waits on a close (which can block: a
// file's ->flush runs on every close, NFS writes back there). Plain
// close_range (5.9) closes them now; before that, close() each number up to
// the fd limit (reading /proc/self/fd would need getdents and a buffer).
int CloseRange(const ChildPlan* p, unsigned int lo, unsigned int hi) {
  if (p->close_method <= kCloseRangeCloexec) {
    if (syscall(SYS_close_range, lo, hi, CLOSE_RANGE_CLOEXEC) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return -1;
  }
  if (p->close_method <= kCloseRange) {
    if (syscall(SYS_close_range, lo, hi, 0) == 0) return 0;
    if (errno != ENOSYS) return -1;
  }
  // Capped: a limit raised into the millions would make this loop take seconds.
  // The raw system call: glibc's close() is a cancellation point, whose
  // bookkeeping writes the parent thread's state in its TLS (ours too).
  const unsigned int end = p->fd_limit < kCloseLoopCap ? p->fd_limit : kCloseLoopCap;
  for (unsigned int fd = lo; fd <= hi && fd < end; ++fd) syscall(SYS_close, fd);
  return 0;
}

// [lo, hi] except the child's own fds (report pipe, parent pidfd), which
// it needs until execve closes them. Without any: CloseRange itself.
int CloseSpan(const ChildPlan* p, unsigned int lo, unsigned int hi) {
  int own[2] = {p->child_report_fd, p->child_parent_pidfd};
  if (own[0] > own[1]) {
    own[0] = p->child_parent_pidfd;
    own[1] = p->child_report_fd;
  }
  for (int fd : own) {
    if (fd < 0 || static_cast<unsigned int>(fd) < lo || static_cast<unsigned int>(fd) > hi) continue;
    unsigned int k = static_cast<unsigned int>(fd);
    if (k > lo && CloseRange(p, lo, k - 1) == -1) return -1;
    if (k == hi) return 0;
    lo = k + 1;
  }
  return CloseRange(p, lo, hi);
}

}  // namespace

// The child's own fds out of the way of the fd map: one at a number some
// move targets would be replaced by PlaceFds' dup2, so it gets a copy where
// no move goes (DupAside; close-on-exec like the original).
int MoveOwnFds(ChildPlan* p) {
  p->child_report_fd = p->report_fd;
  p->child_parent_pidfd = p->parent_pidfd;
  if (p->report_fd >= 0 && IsTarget(p, p->report_fd)) {
    int fd = DupAside(p, p->report_fd);
    if (fd == -1) return -1;
    p->child_report_fd = fd;
  }
  if (p->parent_pidfd >= 0 && IsTarget(p, p->parent_pidfd)) {
    int fd = DupAside(p, p->parent_pidfd);
    if (fd == -1) return -1;
    p->child_parent_pidfd = fd;
  }
  return 0;
}

// Put every source at its target. The hazards are a target that is also a
// source of another move (3->4 together with 4->3, or 0->5 with 5->0) and a
// parent fd used twice. Two passes make all of them the same case:
//  1. dup every source to a number that is not a target (DupAside), CLOEXEC.
//     After this pass nothing we still need lives at a target number, so
//  2. dup2 each copy onto its target, in any order. dup2 gives the new fd
//     no FD_CLOEXEC, which is exactly "CLOEXEC cleared on the mapped fds and
//     nothing else"; the copies keep theirs and vanish at execve.
// A move whose source already is its target needs no copy (no other move
// writes that number, targets being distinct); its flag is cleared instead.
int PlaceFds(ChildPlan* p) {
  for (int i = 0; i < p->nmoves; ++i) {
    FdMove* m = &p->moves[i];
    if (m->source == m->target) {
      m->temp = -1;
      continue;
    }
    m->temp = DupAside(p, m->source);
    if (m->temp == -1) return -1;
  }
  for (int i = 0; i < p->nmoves; ++i) {
    FdMove* m = &p->moves[i];
    if (m->temp == -1) {
      if (fcntl(m->target, F_SETFD, 0) == -1) return -1;
    } else if (dup2(m->temp, m->target) == -1) {
      return -1;
    }
  }
  return 0;
}

// Everything from 3 up except the kept numbers (sorted by the parent).
int CloseOthers(const ChildPlan* p) {
  unsigned int lo = 3;
  for (int i = 0; i < p->nkeep; ++i) {
    unsigned int k = static_cast<unsigned int>(p->keep[i]);
    if (k > lo && CloseSpan(p, lo, k - 1) == -1) return -1;
    lo = k + 1;
  }
  return CloseSpan(p, lo, ~0U);
}

}  // namespace folk
