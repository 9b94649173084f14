// Process creation for @folk/fd-inherit: put an exact fd map into a new
// program, in time that does not depend on how much memory the parent has.
//
// Why not fork(2): fork copies the parent's page tables. Copy-on-write makes
// the pages themselves free, but the tables are proportional to the
// resident set (a Node process at 8 GB RSS spends nearly 0.4 s
// in fork, all of it with the event loop stopped), and the child then takes
// copy-on-write faults on whatever it touches before exec.
//
// What we do instead is what glibc's posix_spawn does: a vfork-style clone.
//  - CLONE_VM: the child runs in the parent's address space. Nothing is
//    copied, so the cost is the same at 50 MB or 8 GB.
//  - CLONE_VFORK: the calling thread sleeps until the child calls execve
//    (which gives it a fresh address space) or exits. The child therefore
//    never races the thread whose memory it borrows. Other threads of the
//    parent (libuv's pool, V8's helpers) keep running, which is why the
//    child must not take any lock: see the rules below.
//  - Its own small stack, mmap'd once per spawning thread. Sharing the
//    parent's stack, as vfork(2) does, only works when the child returns
//    into the caller's frame, which C++ cannot promise; a separate stack
//    makes the child a plain function call.
//  - CLONE_PIDFD: the kernel hands us a pidfd for the child as part of the
//    clone, so there is no moment at which we know only a pid that might be
//    recycled. clone3 (Linux 5.3) is used where we have the few lines of
//    assembly it needs (x86-64); otherwise clone(2), which accepts
//    CLONE_PIDFD since 5.2; otherwise clone(2) and pidfd_open(2) right after.
//    That last one is race-free too, because the child is ours and unreaped:
//    a pid cannot be reused until its zombie is reaped, nothing in Node reaps
//    a pid it did not create (libuv waits for its own pids only), and we have
//    not reaped it yet. (It would not hold if the process set SIGCHLD to
//    SIG_IGN, which makes the kernel reap children itself; Node never does.)
//  - All signals are blocked around the clone, so no handler of the parent
//    can run in the child, on the parent's memory, before the child has
//    reset it. The child sets every caught signal back to SIG_DFL (the
//    kernel does it for us with clone3's CLONE_CLEAR_SIGHAND, 5.5),
//    keeps SIG_IGN as exec would, and restores the parent's mask just before
//    execve. We block with the raw rt_sigprocmask rather than
//    pthread_sigmask, which silently leaves glibc's two internal signals
//    (SIGCANCEL, SIGSETXID) open; glibc's posix_spawn blocks them as well.
//
// Rules for code that runs in the child (ChildMain and what it calls):
//  - Everything it needs (argv, envp, the fd plan, the buffer for
//    LISTEN_PID) is built by the parent before the clone. The child never
//    allocates: malloc's locks may be held by another parent thread, and
//    in this address space they stay held.
//  - Only async-signal-safe calls, all plain system calls. Credentials go
//    through syscall(2) directly: glibc's setuid() in a multithreaded
//    process would signal every thread of the parent to change theirs too.
//  - The addon is linked with -z now (binding.gyp) so no call here goes
//    through the lazy PLT resolver.
//  - errno is the parent thread's errno (same TLS, same memory), which is
//    harmless while the parent sleeps.
//  - A failure reaches the parent through the plan itself: the child stores
//    errno and the step that failed in it (the same memory the parent reads
//    once the clone returns, since CLONE_VFORK holds the parent until the
//    child has exec'd or exited) and exits with 127. The parent sees it
//    synchronously, reaps the child and reports the error; no pipe needed.
//    Except where CLONE_VM does not share memory at all: qemu-user runs the
//    clone as a plain fork. A probe finds that out once per process (a
//    child that only sets a flag), and there the child reports through a
//    close-on-exec pipe instead (EOF: it exec'd).
//
// Namespaces (CLONE_NEW*) ride on the same clone; they add steps, never
// cost to a spawn that asks for none. The one that changes the shape is a
// user namespace with maps: /proc/PID/uid_map and gid_map can only be
// written from outside once the child exists, and only the parent may map
// more than its own id (root mapping ranges). With CLONE_VFORK the parent
// would sleep until the very execve that must wait for the maps, so that
// one spawn goes without it, as a handshake on the plan's memory:
//  - the child first waits on a futex (`go`), before anything else;
//  - the parent writes setgroups, gid_map and uid_map, sets `go` and wakes
//    it, then sleeps until the kernel clears `child_tid`
//    (CLONE_CHILD_CLEARTID), which it does when the child lets go of our
//    memory, in execve or in exit: the same moment CLONE_VFORK would wake
//    us, so the plan, the stack and the error report work as before.
//  - Both run at once on one errno (one TLS), so each side touches it only
//    while the other cannot read it: the child's futex wait cannot fail
//    before `go` is set, and the parent uses raw system calls that cannot
//    fail while the child runs (signals stay blocked throughout, and a
//    futex wait on a value that already changed returns only once the
//    child has left our memory). No glibc wrapper with cancellation
//    bookkeeping (open, write, read, close) runs on either side then.
// Everything else the namespaces need (sethostname, mount, pivot_root)
// happens in the child, as plain system calls, under the rules above.
#include "spawn.h"

#include <atomic>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
// struct statx and STATX_INO for the raw statx below: glibc's <sys/stat.h>
// has them (from this very header), musl before 1.2.5 does not.
#include <linux/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_CLEAR_SIGHAND
#define CLONE_CLEAR_SIGHAND 0x100000000ULL
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace folk {

namespace {

// The kernel's sigset_t on the 64-bit architectures we build for.
constexpr size_t kSigsetSize = sizeof(uint64_t);

// The child's stack size. ChildMain and the libc syscall wrappers it calls
// use a few hundred bytes; the rest is margin, nearly free with
// MAP_NORESERVE and lazily faulted pages.
constexpr size_t kStackSize = 64 * 1024;

// The close() loop for kernels without close_range stops here (the kernel's
// default fs.nr_open).
constexpr unsigned int kCloseLoopCap = 1U << 20;

// statfs f_type of pidfs (PID_FS_MAGIC, Linux 6.9), where pidfds live.
constexpr long kPidfsMagic = 0x50494446;

// Mount flags of the /proc a new pid namespace gets.
constexpr unsigned long kProcFlags = MS_NOSUID | MS_NODEV | MS_NOEXEC;

// struct clone_args up to VER2 (Linux 5.7, `cgroup`): declared here so the
// build does not depend on how new the machine's kernel headers are. A
// spawn without a cgroup passes VER0's size (5.3), as it always did.
struct CloneArgs {
  uint64_t flags;
  uint64_t pidfd;
  uint64_t child_tid;
  uint64_t parent_tid;
  uint64_t exit_signal;
  uint64_t stack;
  uint64_t stack_size;
  uint64_t tls;
  uint64_t set_tid;       // VER1 (5.5)
  uint64_t set_tid_size;
  uint64_t cgroup;        // VER2 (5.7)
};
constexpr size_t kCloneArgsSizeVer0 = 64;
constexpr size_t kCloneArgsSizeVer2 = 88;
static_assert(sizeof(CloneArgs) == kCloneArgsSizeVer2, "struct clone_args VER2 is 88 bytes");

#if defined(__x86_64__) && !defined(FOLK_NO_CLONE3)  // FOLK_NO_CLONE3: build as other architectures do
#define FOLK_HAVE_CLONE3 1
// clone3 has no libc wrapper that runs a function on the new stack (glibc's
// is internal), and a plain syscall() cannot be used: the child would return
// into C code on a stack that has no frames. So: issue the syscall; in the
// child (rax == 0, rsp == the new stack's top, all other registers as the
// parent left them, minus rcx/r11) call fn(arg) and exit with its result.
// fn never returns in practice; it execs or _exits. The stack top is
// 16-byte aligned, so the call leaves fn with the alignment the ABI expects.
long Clone3(CloneArgs* args, size_t size, int (*fn)(void*), void* arg) {
  register long rax __asm__("rax") = SYS_clone3;
  register long rdi __asm__("rdi") = reinterpret_cast<long>(args);
  register long rsi __asm__("rsi") = static_cast<long>(size);
  register long rdx __asm__("rdx") = reinterpret_cast<long>(fn);
  register long r8 __asm__("r8") = reinterpret_cast<long>(arg);
  __asm__ volatile(
      "syscall\n\t"
      "testq %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "xorl %%ebp, %%ebp\n\t"  // end of the frame chain for debuggers
      "movq %%r8, %%rdi\n\t"
      "callq *%%rdx\n\t"
      "movl %%eax, %%edi\n\t"
      "movl $60, %%eax\n\t"  // SYS_exit
      "syscall\n\t"
      "hlt\n"
      "1:\n\t"
      : "+r"(rax)
      : "r"(rdi), "r"(rsi), "r"(rdx), "r"(r8)
      : "rcx", "r11", "memory", "cc");
  return rax;
}
#endif

std::atomic<int> g_close_method{kCloseRangeCloexec};
std::atomic<pid_t> g_assumed_parent_pid{0};

std::atomic<int> g_report{kReportUnknown};

#ifdef FOLK_HAVE_CLONE3
std::atomic<int> g_mode{kModeClone3ClearSighand};
#else
std::atomic<int> g_mode{kModeClonePidfd};
#endif

// Move to a more conservative mode after the kernel refused a newer one.
// Never moves back up, so threads racing here agree.
void Downgrade(int from, int to) {
  g_mode.compare_exchange_strong(from, to);
}

// The mode to try after `mode` failed with `err`, or -1 when the error is
// not about the mode. ENOSYS from clone3: before 5.3, or a seccomp filter
// (container runtimes answer clone3 with ENOSYS precisely so that callers
// fall back; some older ones said EPERM). EINVAL with CLEAR_SIGHAND: 5.3 or
// 5.4; from clone(2) with CLONE_PIDFD: before 5.2. A spawn with namespaces
// or a cgroup cannot tell those apart from its own errors (EPERM: no right
// to the namespace; EINVAL: a kernel without CLONE_INTO_CGROUP, 5.3-5.6, or
// without the namespace), so it goes down the whole chain on any of the
// three (`isolated`), and never moves g_mode: the next plain spawn decides.
int NextMode(int mode, int err, bool isolated) {
  const bool clone3 = mode == kModeClone3ClearSighand || mode == kModeClone3;
  if (isolated && (err == ENOSYS || err == EPERM || err == EINVAL)) {
    if (mode == kModeClone3ClearSighand && err == EINVAL) return kModeClone3;
    if (clone3) return kModeClonePidfd;
    return mode == kModeClonePidfd ? kModeClonePidfdOpen : -1;
  }
  if (clone3 && (err == ENOSYS || err == EPERM)) return kModeClonePidfd;
  if (err == EINVAL && mode == kModeClone3ClearSighand) return kModeClone3;
  if (err == EINVAL && mode == kModeClonePidfd) return kModeClonePidfdOpen;
  return -1;
}

// ---- The child. Everything from here to ChildMain obeys the rules above. ----

void ResetSignalHandlers() {
  // The kernel's struct sigaction starts with the handler on every
  // architecture; the rest (flags, restorer where it exists, mask) is zero
  // for SIG_DFL, so one zeroed buffer big enough for the largest layout
  // serves all of them.
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    unsigned long current[4] = {0, 0, 0, 0};
    if (syscall(SYS_rt_sigaction, sig, nullptr, current, kSigsetSize) != 0) continue;
    unsigned long handler = current[0];
    if (handler == reinterpret_cast<unsigned long>(SIG_DFL) ||
        handler == reinterpret_cast<unsigned long>(SIG_IGN)) {
      continue;
    }
    unsigned long dfl[4] = {0, 0, 0, 0};
    syscall(SYS_rt_sigaction, sig, dfl, nullptr, kSigsetSize);
  }
}

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

// Everything from 3 up except the kept numbers (sorted by the parent).
int CloseOthers(ChildPlan* p) {
  unsigned int lo = 3;
  for (int i = 0; i < p->nkeep; ++i) {
    unsigned int k = static_cast<unsigned int>(p->keep[i]);
    if (k > lo && CloseSpan(p, lo, k - 1) == -1) return -1;
    lo = k + 1;
  }
  return CloseSpan(p, lo, ~0U);
}

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

// The parent writes the user namespace's maps while we wait here (see the
// handshake at the top). A raw futex wait, the value read again after each
// wake; it cannot fail (and touch the errno the parent is using) before
// `go` is set.
void WaitForGo(ChildPlan* p) {
  while (p->go == 0) {
    syscall(SYS_futex, const_cast<uint32_t*>(&p->go), FUTEX_WAIT_PRIVATE, 0U, nullptr, nullptr, 0);
  }
}

// Where clone3 did not place us (CLONE_INTO_CGROUP), we move ourselves
// ("0" is the writer), before any other step: whatever the program does
// from its first instruction is accounted to the cgroup. A new cgroup
// namespace is made only then, so that its root is that cgroup, as with
// clone3 (a namespace made by the clone would be rooted in the parent's).
int EnterCgroup(const ChildPlan* p, int* step) {
  if (p->iso.cgroup_procs_fd < 0 || p->cgroup_by_clone) return 0;
  *step = kStepCgroup;
  long n = syscall(SYS_write, p->iso.cgroup_procs_fd, "0", 1);
  if (n != 1) {
    if (n >= 0) errno = EIO;
    return -1;
  }
  *step = kStepUnshareCgroup;
  return p->unshare_cgroup ? static_cast<int>(syscall(SYS_unshare, CLONE_NEWCGROUP)) : 0;
}

long Mount(const char* source, const char* target, const char* type, unsigned long flags) {
  return syscall(SYS_mount, source, target, type, flags, nullptr);
}

// pivot_root into the prepared directory: bind it onto itself (pivot_root
// wants a mount point), go in, mount /proc there while the old root's is
// still in view (a user namespace may mount proc only where a full one is
// visible already), stack the old root on top of the new one and detach it.
int EnterRoot(const IsolationPlan& n, int* step) {
  *step = kStepBindRoot;
  if (Mount(n.root, n.root, nullptr, MS_BIND | MS_REC) == -1) return -1;
  *step = kStepChdirRoot;
  if (chdir(n.root) == -1) return -1;
  *step = kStepMountProc;
  if (n.mount_proc && Mount("proc", "proc", "proc", kProcFlags) == -1) return -1;
  *step = kStepPivotRoot;
  if (syscall(SYS_pivot_root, ".", ".") == -1) return -1;
  *step = kStepDetachOldRoot;
  if (syscall(SYS_umount2, ".", MNT_DETACH) == -1) return -1;
  *step = kStepChdirRoot;
  return chdir("/");
}

// Inside the new namespaces (the user namespace mapped by now): hostname,
// mount propagation, root, /proc. Each only when asked for.
int SetUpNamespaces(const ChildPlan* p, int* step) {
  const IsolationPlan& n = p->iso;
  *step = kStepHostname;
  if (n.hostname != nullptr && syscall(SYS_sethostname, n.hostname, n.hostname_len) == -1) return -1;
  *step = kStepMountPropagation;
  if (n.propagation != 0 && Mount(nullptr, "/", nullptr, MS_REC | n.propagation) == -1) return -1;
  if (n.root != nullptr) return EnterRoot(n, step);
  *step = kStepMountProc;
  if (n.mount_proc && Mount("proc", "/proc", "proc", kProcFlags) == -1) return -1;
  return 0;
}

// Whether the process that spawned us died after the clone (see the
// pdeathsig step): our parent pid changed, or, inside a new pid namespace,
// where getppid() is 0 whoever the parent is, its pidfd became readable.
bool ParentGone(const ChildPlan* p) {
  if (p->child_parent_pidfd < 0) return syscall(SYS_getppid) != p->parent_pid;
  struct pollfd pfd = {p->child_parent_pidfd, POLLIN, 0};
  struct timespec now = {0, 0};
  return syscall(SYS_ppoll, &pfd, 1, &now, nullptr, kSigsetSize) == 1 && (pfd.revents & POLLIN) != 0;
}

// A failure, for a parent that does not share our memory (report pipe).
void Report(const ChildPlan* p, int err, int step) {
  if (p->child_report_fd < 0) return;
  int report[2] = {err, step};
  syscall(SYS_write, p->child_report_fd, report, sizeof report);
}

// Decimal digits of v into out (which has room for 21 bytes: 20 digits and
// the NUL), no libc.
void FormatDecimal(char* out, uint64_t v) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (int i = 0; i < n; ++i) out[i] = digits[n - 1 - i];
  out[n] = '\0';
}

struct KernelRlimit {
  uint64_t soft;
  uint64_t hard;
};

// LISTEN_PIDFDID, as systemd sets it: the id of our own pidfd, found by
// the child itself (the parent's pidfd for it has the same inode, but the
// parent runs again only after execve). Where the kernel cannot tell, the
// variable is left out, as systemd leaves it out: readers then go by
// LISTEN_PID alone.
void SetListenPidfdid(const ChildPlan* p) {
  if (p->listen_pidfdid == nullptr) return;
  uint64_t id;
  if (SelfPidfdInodeId(&id)) {
    FormatDecimal(p->listen_pidfdid, id);
  } else {
    *p->listen_pidfdid_slot = nullptr;
  }
}

// Caught signals back to SIG_DFL (unless the kernel did it), and those the
// plan names too: ignored signals survive exec by design, but Node ignores
// SIGPIPE and SIGXFSZ for its own sake, not the child's.
void ResetSignals(const ChildPlan* p) {
  if (p->reset_handlers) ResetSignalHandlers();
  for (int sig = 1; sig <= 64; ++sig) {
    if ((p->default_signals >> (sig - 1) & 1) == 0) continue;
    unsigned long dfl[4] = {0, 0, 0, 0};
    syscall(SYS_rt_sigaction, sig, dfl, nullptr, kSigsetSize);
  }
}

// Supplementary groups, then the gid, then the uid: after setuid we would
// no longer be allowed to change the others.
// Without a list, a child asked to change uid or gid still loses the
// groups it would inherit (root's 0 among them), as libuv does for
// child_process. Only a privileged process can do that; one without the
// privilege has no groups but its own to keep, so EPERM is no failure.
// -1 with *step set to the one that failed.
int ChangeCredentials(const ChildPlan* p, int* step) {
  *step = kStepSetgroups;
  if (p->ngroups >= 0) {
    if (syscall(SYS_setgroups, p->ngroups, p->groups) == -1) return -1;
  } else if (p->drop_groups) {
    if (syscall(SYS_setgroups, 0, nullptr) == -1 && errno != EPERM) return -1;
  }
  *step = kStepSetgid;
  if (p->gid >= 0 && syscall(SYS_setgid, p->gid) == -1) return -1;
  *step = kStepSetuid;
  if (p->uid >= 0 && syscall(SYS_setuid, p->uid) == -1) return -1;
  return 0;
}

int ChildMain(void* arg) {
  ChildPlan* p = static_cast<ChildPlan*>(arg);
  int step = kStepNone;

  if (p->handshake) WaitForGo(p);

  if (EnterCgroup(p, &step) == -1) goto fail;

  step = kStepDup;
  if (MoveOwnFds(p) == -1) goto fail;

  // First, while every fd number is still free to use and no rlimit applies.
  SetListenPidfdid(p);
  ResetSignals(p);

  // Before chdir: with a new root, cwd is a path inside it.
  if (SetUpNamespaces(p, &step) == -1) goto fail;

  step = kStepSetsid;
  if (p->setsid && setsid() == -1) goto fail;

  // Before any credential change, like Python's subprocess and libuv: the
  // directory is looked up with the parent's rights.
  step = kStepChdir;
  if (p->cwd != nullptr && chdir(p->cwd) == -1) goto fail;

  step = kStepDup;
  if (PlaceFds(p) == -1) goto fail;

  step = kStepCloseRange;
  if (p->close_others && CloseOthers(p) == -1) goto fail;

  step = kStepRlimit;
  for (int i = 0; i < p->nrlimits; ++i) {
    KernelRlimit lim = {p->rlimits[i].soft, p->rlimits[i].hard};
    if (syscall(SYS_prlimit64, 0, p->rlimits[i].resource, &lim, nullptr) == -1) goto fail;
  }

  if (p->umask >= 0) umask(static_cast<mode_t>(p->umask));

  if (ChangeCredentials(p, &step) == -1) goto fail;

  // After the credential change, which would clear it. The death signal is
  // armed only for a parent alive at this moment; if the parent process
  // died after the clone (another thread called exit, or it was killed
  // while we slept in vfork), we were reparented before the prctl and would
  // never get the signal. ParentGone() tells, so send the signal ourselves.
  // Signals are still blocked: it is delivered once the mask is restored
  // below, with the default action since the handlers are reset by now.
  // Inside a new pid namespace we are its init, which the kernel spares any
  // signal it has no handler for, even SIGKILL from itself: there we end
  // with the status a shell gives a process killed by it, 128 + the signal.
  step = kStepPdeathsig;
  if (p->pdeathsig != 0) {
    if (prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(p->pdeathsig), 0UL, 0UL, 0UL) == -1) goto fail;
    if (ParentGone(p)) {
      if (p->child_parent_pidfd >= 0) _exit(128 + p->pdeathsig);
      syscall(SYS_kill, syscall(SYS_getpid), p->pdeathsig);
    }
  }

  step = kStepNoNewPrivs;
  if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1UL, 0UL, 0UL, 0UL) == -1) goto fail;

  // Our pid is known only now. getpid(2) directly: the child shares the
  // parent's TLS, so no libc pid cache could be trusted here.
  if (p->listen_pid != nullptr) FormatDecimal(p->listen_pid, static_cast<uint64_t>(syscall(SYS_getpid)));

  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &p->old_mask, nullptr, kSigsetSize);

  step = kStepExecve;
  execve(p->path, p->argv, p->envp);

fail:
  const int err = errno;
  p->err = err;
  p->step = step;
  Report(p, err, step);
  _exit(127);
}

// ---- The parent. ----

// The child's stack, one per spawning thread, made on first use and kept:
// a spawn on a thread is synchronous, so two children never share it, and
// keeping it saves an mmap, an mprotect and an munmap (with its TLB
// shootdown across the parent's threads) per spawn. Freed when the thread
// exits. A PROT_NONE page below it turns an overflow into a crash of the
// child instead of a write into the parent's memory.
struct StackMapping {
  void* base = nullptr;
  size_t size = 0;
  ~StackMapping() {
    if (base != nullptr) munmap(base, size);
  }
};

char* ThreadStack() {
  thread_local StackMapping stack;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (stack.base == nullptr) {
    void* map = mmap(nullptr, kStackSize + page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) return nullptr;
    mprotect(map, page, PROT_NONE);  // best effort
    stack.base = map;
    stack.size = kStackSize + page;
  }
  return static_cast<char*>(stack.base) + page;
}

// Collect a child that failed before execve. It has already exited or is
// about to: CLONE_VFORK woke us when it released its memory in exit(), a
// moment before it turns into a zombie, so this blocks for microseconds at
// most. waitid(P_PIDFD) needs 5.4; waitpid covers 5.3.
void ReapFailedChild(pid_t pid, int pidfd) {
  siginfo_t info;
  for (;;) {
    if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED) == 0) return;
    if (errno != EINTR) break;
  }
  while (waitpid(pid, nullptr, 0) == -1 && errno == EINTR) {
  }
}

#ifdef FOLK_HAVE_CLONE3
// clone3 with CLONE_PIDFD, CLONE_CLEAR_SIGHAND in that mode, and
// CLONE_INTO_CGROUP for a cgroup: the pid, or -errno.
long Clone3Child(ChildPlan* p, char* stack_low, int mode, uint64_t flags, int* pidfd) {
  CloneArgs args = {};
  args.flags = flags | CLONE_PIDFD;
  if (mode == kModeClone3ClearSighand) args.flags |= CLONE_CLEAR_SIGHAND;
  args.pidfd = reinterpret_cast<uint64_t>(pidfd);
  if (p->handshake) args.child_tid = reinterpret_cast<uint64_t>(&p->child_tid);
  args.exit_signal = SIGCHLD;
  args.stack = reinterpret_cast<uint64_t>(stack_low);
  args.stack_size = kStackSize;
  size_t size = kCloneArgsSizeVer0;
  p->cgroup_by_clone = p->iso.cgroup_fd >= 0;
  p->unshare_cgroup = false;
  if (p->cgroup_by_clone) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(p->iso.cgroup_fd);
    size = kCloneArgsSizeVer2;
  }
  p->reset_handlers = mode != kModeClone3ClearSighand;
  return Clone3(&args, size, ChildMain, p);
}
#endif

// One attempt at creating the child in `mode`: the pid, or -errno. *pidfd
// is the child's pidfd, or -1 when the clone made none.
long CloneOnce(ChildPlan* p, char* stack_low, int mode, int* pidfd) {
  p->err = 0;
  p->step = kStepNone;
  p->go = 0;
  p->child_tid = -1;
  *pidfd = -1;
  // The handshake replaces CLONE_VFORK's wait with its own (see the top).
  uint64_t flags = CLONE_VM | p->iso.clone_flags | (p->handshake ? CLONE_CHILD_CLEARTID : CLONE_VFORK);
  if (mode == kModeClone3ClearSighand || mode == kModeClone3) {
#ifdef FOLK_HAVE_CLONE3
    return Clone3Child(p, stack_low, mode, flags, pidfd);
#else
    return -ENOSYS;
#endif
  }
  p->reset_handlers = true;
  p->cgroup_by_clone = false;
  p->unshare_cgroup = p->iso.cgroup_fd >= 0 && (flags & CLONE_NEWCGROUP) != 0;
  if (p->unshare_cgroup) flags &= ~static_cast<uint64_t>(CLONE_NEWCGROUP);
  int cflags = static_cast<int>(flags) | SIGCHLD;
  if (mode == kModeClonePidfd) cflags |= CLONE_PIDFD;
  pid_t pid = clone(ChildMain, stack_low + kStackSize, cflags, p, pidfd, nullptr, const_cast<pid_t*>(&p->child_tid));
  return pid != -1 ? pid : -errno;
}

// Creates the child the first way this kernel accepts, starting from the
// mode last known to work and moving down the chain (see CloneMode and
// NextMode) when the kernel refuses one: the pid, or -1 with *err. *pidfd
// is the child's pidfd, or -1 when the clone made none. Signals are blocked.
pid_t CloneChild(ChildPlan* p, char* stack_low, int* pidfd, int* err) {
  const bool isolated = p->iso.clone_flags != 0 || p->iso.cgroup_fd >= 0;
  int mode = g_mode.load();
  for (;;) {
    long r = CloneOnce(p, stack_low, mode, pidfd);
    if (r > 0) return static_cast<pid_t>(r);
    *err = static_cast<int>(-r);
    const int next = NextMode(mode, *err, isolated);
    if (next < 0) return -1;
    if (isolated) {
      mode = next;
    } else {
      Downgrade(mode, next);
      mode = g_mode.load();
    }
  }
}

int ProbeChild(void* flag) {
  *static_cast<volatile int*>(flag) = 1;
  syscall(SYS_exit, 0);
  return 0;
}

// Whether a CLONE_VM child really writes our memory, which decides how a
// child reports a failure (ReportMode). Always on a real kernel; qemu-user
// runs the clone as a fork. Asked once, of a child that sets a flag and
// exits; a probe that cannot be made is asked again next time, and the
// pipe, which works either way, serves meanwhile. Signals are blocked.
int ProbeReportMode(char* stack_low) {
  volatile int flag = 0;
  pid_t pid = clone(ProbeChild, stack_low + kStackSize, CLONE_VM | CLONE_VFORK | SIGCHLD, const_cast<int*>(&flag));
  if (pid == -1) return kReportPipe;
  while (waitpid(pid, nullptr, 0) == -1 && errno == EINTR) {
  }
  const int mode = flag != 0 ? kReportMemory : kReportPipe;
  int unknown = kReportUnknown;
  g_report.compare_exchange_strong(unknown, mode);
  return mode;
}

// The parent's ends of what ChildMain may need besides the plan: the
// report pipe (qemu-user) and a pidfd of this process (pdeathsig in a new
// pid namespace). Closed by SpawnChild once the child has exec'd or failed.
struct OwnFds {
  int report_read = -1;
  int report_write = -1;
  int parent_pidfd = -1;
  void Close() {
    int* fds[] = {&report_read, &report_write, &parent_pidfd};
    for (int* fd : fds) {
      if (*fd != -1) close(*fd);
      *fd = -1;
    }
  }
};

// Opens them as the plan needs, at 3 or above, and points the plan at the
// child's ends. -1 with errno and *step, nothing left open.
int OpenOwnFds(ChildPlan* p, char* stack_low, OwnFds* own, int* step) {
  int mode = g_report.load();
  if (mode == kReportUnknown) mode = ProbeReportMode(stack_low);
  if (mode == kReportPipe) {
    int ends[2];
    *step = kStepPipe;
    if (pipe2(ends, O_CLOEXEC) == -1) return -1;
    own->report_read = ends[0];
    own->report_write = ends[1];
  }
  if (p->pdeathsig != 0 && (p->iso.clone_flags & CLONE_NEWPID) != 0) {
    *step = kStepPidfdOpen;
    pid_t assumed = g_assumed_parent_pid.load();
    own->parent_pidfd = static_cast<int>(syscall(SYS_pidfd_open, assumed != 0 ? assumed : getpid(), 0));
    if (own->parent_pidfd == -1) {
      own->Close();
      return -1;
    }
  }
  *step = kStepPidfdMove;
  int* fds[] = {&own->report_read, &own->report_write, &own->parent_pidfd};
  for (int* fd : fds) {
    if (*fd == -1) continue;
    int moved = MoveAboveStdio(*fd);
    if (moved == -1) {
      int err = errno;
      own->Close();
      errno = err;
      return -1;
    }
    *fd = moved;
  }
  p->report_fd = own->report_write;
  p->parent_pidfd = own->parent_pidfd;
  return 0;
}

// Writes `data` to /proc/<pid>/<file> in one write(2), as the kernel wants
// a map written. Raw system calls only: the child runs now (see the top).
int WriteProcFile(pid_t pid, const char* file, const char* data, size_t len) {
  char path[64] = "/proc/";
  char* end = path + 6;
  FormatDecimal(end, static_cast<uint64_t>(pid));
  while (*end != '\0') ++end;
  *end++ = '/';
  for (const char* c = file; *c != '\0' && end < path + sizeof path - 1; ++c) *end++ = *c;
  *end = '\0';
  long fd = syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  long n = syscall(SYS_write, fd, data, len);
  int err = n < 0 ? errno : EIO;
  syscall(SYS_close, fd);
  if (n == static_cast<long>(len)) return 0;
  errno = err;
  return -1;
}

// The user namespace's maps, while the child waits in WaitForGo. setgroups
// first: the kernel refuses "deny" once gid_map is written. -1 with errno
// and *step.
int WriteIdMaps(const IsolationPlan& n, pid_t pid, int* step) {
  *step = kStepSetgroupsDeny;
  if (n.deny_setgroups && WriteProcFile(pid, "setgroups", "deny", 4) == -1) return -1;
  *step = kStepGidMap;
  if (n.gid_map != nullptr && WriteProcFile(pid, "gid_map", n.gid_map, n.gid_map_len) == -1) return -1;
  *step = kStepUidMap;
  if (n.uid_map != nullptr && WriteProcFile(pid, "uid_map", n.uid_map, n.uid_map_len) == -1) return -1;
  return 0;
}

// Lets the child go on, then sleeps until it has left our memory (execve or
// exit), when the kernel clears child_tid and wakes us: CLONE_VFORK's wait,
// by hand. Neither futex call can fail while the child runs (see the top).
void ReleaseAndWait(ChildPlan* p) {
  p->go = 1;
  syscall(SYS_futex, const_cast<uint32_t*>(&p->go), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  for (;;) {
    const pid_t tid = p->child_tid;
    if (tid == 0) return;
    syscall(SYS_futex, const_cast<pid_t*>(&p->child_tid), FUTEX_WAIT, tid, nullptr, nullptr, 0);
  }
}

// Everything done with signals blocked: the parent's own fds, the clone,
// and for a user namespace the maps and the wait. The pid, or -1 with *err
// and *step; a child whose maps were refused is killed (SpawnChild reaps
// it) and its pid returned in *killed.
pid_t StartChild(ChildPlan* p, char* stack_low, OwnFds* own, int* pidfd, int* err, int* step, pid_t* killed) {
  if (OpenOwnFds(p, stack_low, own, step) == -1) {
    *err = errno;
    return -1;
  }
  *step = kStepClone;
  pid_t pid = CloneChild(p, stack_low, pidfd, err);
  if (own->report_write != -1) {
    close(own->report_write);  // the child has its own copy
    own->report_write = -1;
  }
  if (pid == -1 || !p->handshake) return pid;
  if (WriteIdMaps(p->iso, pid, step) == -1) {
    *err = errno;
    kill(pid, SIGKILL);  // waiting in WaitForGo, never ran anything of its own
    *killed = pid;
    return -1;
  }
  ReleaseAndWait(p);
  return pid;
}

// What the child failed at, if it did: 0, or its errno with *step. From the
// plan, or from the report pipe where memory is not shared (EOF: it exec'd).
int ChildFailure(const ChildPlan* p, const OwnFds& own, int* step) {
  if (own.report_read == -1) {
    *step = p->step;
    return p->err;
  }
  int report[2];
  size_t got = 0;
  while (got < sizeof report) {
    ssize_t n = read(own.report_read, reinterpret_cast<char*>(report) + got, sizeof report - got);
    if (n == -1 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (got < sizeof report) return 0;
  *step = report[1];
  return report[0];
}

// The pidfd of a child cloned without CLONE_PIDFD (or by a kernel that
// ignored the flag). See the top of this file for why this is still
// race-free. On failure, -1 with *err, and no child left: one that runs the
// program cannot be handed out, so it is killed, and reaped either way.
int PidfdOpenAfterClone(const ChildPlan* p, pid_t pid, int* err) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) return pidfd;
  *err = errno;
  if (p->err == 0) kill(pid, SIGKILL);
  while (waitpid(pid, nullptr, 0) == -1 && errno == EINTR) {
  }
  return -1;
}

}  // namespace

const char* StepName(int step) {
  switch (step) {
    case kStepStack: return "mmap";
    case kStepClone: return "clone";
    case kStepPidfdOpen: return "pidfd_open";
    case kStepPidfdMove: return "fcntl";
    case kStepSetsid: return "setsid";
    case kStepChdir: return "chdir";
    case kStepDup: return "dup2";
    case kStepCloseRange: return "close_range";
    case kStepRlimit: return "setrlimit";
    case kStepSetgroups: return "setgroups";
    case kStepSetgid: return "setgid";
    case kStepSetuid: return "setuid";
    case kStepPdeathsig: return "prctl";
    case kStepNoNewPrivs: return "prctl";
    case kStepExecve: return "execve";
    case kStepUidMap: return "write uid_map";
    case kStepGidMap: return "write gid_map";
    case kStepSetgroupsDeny: return "write setgroups";
    case kStepCgroup: return "cgroup";
    case kStepHostname: return "sethostname";
    case kStepMountPropagation: return "mount propagation";
    case kStepBindRoot: return "mount root";
    case kStepChdirRoot: return "chdir root";
    case kStepMountProc: return "mount /proc";
    case kStepPivotRoot: return "pivot_root";
    case kStepDetachOldRoot: return "umount old root";
    case kStepPipe: return "pipe2";
    case kStepUnshareCgroup: return "unshare cgroup";
    default: return "spawn";
  }
}

bool SelfPidfdInodeId(uint64_t* id) {
  long fd = syscall(SYS_pidfd_open, syscall(SYS_getpid), 0);
  if (fd < 0) return false;
  // statx, not fstat: see the glibc note in @folk/pidfd's IdentifyFile.
  struct statfs fs;
  struct statx sx;
  bool known = syscall(SYS_fstatfs, fd, &fs) == 0 && static_cast<long>(fs.f_type) == kPidfsMagic &&
               syscall(SYS_statx, fd, "", AT_EMPTY_PATH, STATX_INO, &sx) == 0 && (sx.stx_mask & STATX_INO) != 0;
  syscall(SYS_close, fd);
  if (known) *id = sx.stx_ino;
  return known;
}

int MoveAboveStdio(int fd) {
  if (fd > STDERR_FILENO) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  if (moved == -1) return -1;
  close(fd);
  return moved;
}

void KillAndReap(pid_t pid, int pidfd) {
  kill(pid, SIGKILL);  // still our unreaped child: the pid cannot have been reused
  ReapFailedChild(pid, pidfd);
  close(pidfd);
}

void SetAssumedParentPid(pid_t pid) { g_assumed_parent_pid.store(pid); }

int GetCloseMethod() { return g_close_method.load(); }

void SetCloseMethod(int method) { g_close_method.store(method); }

int GetCloneMode() { return g_mode.load(); }

void SetCloneMode(int mode) { g_mode.store(mode); }

int GetReportMode() { return g_report.load(); }

void SetReportMode(int mode) { g_report.store(mode); }

int SpawnChild(ChildPlan* p, SpawnOutcome* out) {
  out->pid = -1;
  out->pidfd = -1;
  out->err = 0;
  out->step = kStepNone;

  char* stack_low = ThreadStack();
  if (stack_low == nullptr) {
    out->err = errno;
    out->step = kStepStack;
    return -1;
  }

  p->parent_pid = getpid();
  if (pid_t assumed = g_assumed_parent_pid.load()) p->parent_pid = assumed;
  p->close_method = g_close_method.load();
  const IsolationPlan& n = p->iso;
  p->handshake = (n.clone_flags & CLONE_NEWUSER) != 0 && (n.uid_map != nullptr || n.gid_map != nullptr || n.deny_setgroups);

  uint64_t all = ~uint64_t{0};
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &p->old_mask, kSigsetSize);
  OwnFds own;
  int pidfd = -1;
  int err = 0;
  int step = kStepNone;
  pid_t killed = -1;
  pid_t pid = StartChild(p, stack_low, &own, &pidfd, &err, &step, &killed);
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &p->old_mask, nullptr, kSigsetSize);

  if (pid == -1) {
    if (killed != -1) KillAndReap(killed, pidfd);
    own.Close();
    out->err = err;
    out->step = step;
    return -1;
  }
  if (pidfd < 0) {
    pidfd = PidfdOpenAfterClone(p, pid, &err);
    if (pidfd < 0) {
      own.Close();
      out->err = err;
      out->step = kStepPidfdOpen;
      return -1;
    }
  }
  err = ChildFailure(p, own, &step);
  own.Close();
  if (err != 0) {
    ReapFailedChild(pid, pidfd);
    close(pidfd);
    out->err = err;
    out->step = step;
    return -1;
  }

  // The kernel gave the pidfd the lowest free number, 0-2 when those are
  // closed.
  int moved = MoveAboveStdio(pidfd);
  if (moved == -1) {
    out->err = errno;
    out->step = kStepPidfdMove;
    KillAndReap(pid, pidfd);
    return -1;
  }
  out->pid = pid;
  out->pidfd = moved;
  return 0;
}

}  // namespace folk
