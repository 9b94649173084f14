// How the child is created (see clone.h): the clone3 entry in assembly, the
// chain of fallbacks down to a plain clone(2) (whose pidfd spawn.cc then
// opens), the child's stack, and the probe for qemu-user. The clone mode
// and the report mode are process-wide choices kept here, each moved only
// by the kernel's answers (or by the tests, through spawn.h's hooks).
#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>

#include "child.h"
#include "clone.h"
#include "kernel_abi.h"

namespace folk {

namespace {

// The child's stack size. ChildMain and the libc syscall wrappers it calls
// use a few hundred bytes; the rest is margin, nearly free with
// MAP_NORESERVE and lazily faulted pages.
constexpr size_t kStackSize = 64 * 1024;

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
  // The handshake replaces CLONE_VFORK's wait with its own (see isolation.h).
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

int ProbeChild(void* flag) {
  *static_cast<volatile int*>(flag) = 1;
  syscall(SYS_exit, 0);
  return 0;
}

}  // namespace

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

int GetCloneMode() { return g_mode.load(); }

void SetCloneMode(int mode) { g_mode.store(mode); }

int GetReportMode() { return g_report.load(); }

void SetReportMode(int mode) { g_report.store(mode); }

}  // namespace folk
