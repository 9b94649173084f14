// The child's entry and its own steps (see child.h for the rules every line
// here keeps): signals, LISTEN_PID and LISTEN_PIDFDID, session, cwd,
// limits, credentials, the death signal, and execve. The fd map is
// child_fds.cc's, the namespaces and cgroup isolation.cc's.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
// struct statx and STATX_INO for the raw statx below: glibc's <sys/stat.h>
// has them (from this very header), musl before 1.2.5 does not.
#include <linux/stat.h>
#include <sys/types.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "child.h"
#include "isolation.h"
#include "kernel_abi.h"

namespace folk {

namespace {

// statfs f_type of pidfs (PID_FS_MAGIC, Linux 6.9), where pidfds live.
constexpr long kPidfsMagic = 0x50494446;

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

// The plan's limits, once the fds are placed: those are placed under this
// process's RLIMIT_NOFILE, which the parent checked the map against.
int ApplyRlimits(const ChildPlan* p) {
  for (int i = 0; i < p->nrlimits; ++i) {
    KernelRlimit lim = {p->rlimits[i].soft, p->rlimits[i].hard};
    if (syscall(SYS_prlimit64, 0, p->rlimits[i].resource, &lim, nullptr) == -1) return -1;
  }
  return 0;
}

// PR_SET_PDEATHSIG, for a parent alive at this moment only: if the parent
// process died after the clone (another thread called exit, or it was
// killed while we slept in vfork), we were reparented before the prctl and
// would never get the signal. ParentGone() tells, so send the signal
// ourselves. Signals are still blocked: it is delivered once ChildMain
// restores the mask, with the default action since the handlers are reset
// by then. Inside a new pid namespace we are its init, which the kernel
// spares any signal it has no handler for, even SIGKILL from itself: there
// we end with the status a shell gives a process killed by it, 128 + the
// signal.
int ArmDeathSignal(const ChildPlan* p) {
  if (p->pdeathsig == 0) return 0;
  if (prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(p->pdeathsig), 0UL, 0UL, 0UL) == -1) return -1;
  if (ParentGone(p)) {
    if (p->child_parent_pidfd >= 0) _exit(128 + p->pdeathsig);
    syscall(SYS_kill, syscall(SYS_getpid), p->pdeathsig);
  }
  return 0;
}

}  // namespace

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
  if (ApplyRlimits(p) == -1) goto fail;

  if (p->umask >= 0) umask(static_cast<mode_t>(p->umask));

  if (ChangeCredentials(p, &step) == -1) goto fail;

  // After the credential change, which would clear it.
  step = kStepPdeathsig;
  if (ArmDeathSignal(p) == -1) goto fail;

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

}  // namespace folk
