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
// The parts, a file each:
//  - spawn.cc (this file): SpawnChild, the parent's side from start to end:
//    signals blocked, the parent's own fds for the child, the clone, the
//    user namespace maps, the child's failure read back, the pidfd.
//  - clone.h, clone.cc: the clone itself, its chain of fallbacks, the
//    child's stack, and the probe for where CLONE_VM is a fork (qemu-user).
//  - child.h: the rules for code that runs in the child, written once;
//    child.cc: its entry (ChildMain) and steps; child_fds.cc: the fd map.
//  - isolation.h, isolation.cc: namespaces and cgroup, both sides, and the
//    handshake that lets the parent write a user namespace's maps.
//  - kernel_abi.h: the kernel's constants and structs, for older headers.
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>

#include "clone.h"
#include "isolation.h"
#include "kernel_abi.h"

namespace folk {

namespace {

// What the tests' hooks in spawn.h set: the close method the child tries
// first, and the parent it watches for the pdeathsig race. SpawnChild puts
// them into the plan (the pid, or a pidfd of it); the child reads only the
// plan.
std::atomic<int> g_close_method{kCloseRangeCloexec};
std::atomic<pid_t> g_assumed_parent_pid{0};

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
  int mode = GetReportMode();
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
