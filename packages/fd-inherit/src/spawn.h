// The process-creation core of @folk/fd-inherit, free of N-API so it reads
// as plain systems code. spawn_request.cc converts JavaScript values into a
// ChildPlan; SpawnChild (spawn.cc) runs it. See spawn.cc for why it is
// built this way and which file holds which part.
#pragma once

#include <stdint.h>
#include <sys/types.h>

namespace folk {

// One "child fd `target` is the parent's fd `source`" entry. `temp` is
// scratch space the child fills in (see PlaceFds in child_fds.cc); it lives
// here so the child never needs memory of its own.
struct FdMove {
  int target;
  int source;
  int temp;
};

struct RlimitSetting {
  int resource;
  uint64_t soft;  // RLIM64_INFINITY for unlimited
  uint64_t hard;
};

// What the child failed at, reported with its errno. Names in StepName().
enum Step : int {
  kStepNone = 0,
  kStepStack,      // mmap of the child's stack (parent)
  kStepClone,      // clone3 / clone (parent)
  kStepPidfdOpen,  // pidfd_open after a clone without CLONE_PIDFD (parent)
  kStepPidfdMove,  // F_DUPFD_CLOEXEC of the pidfd above fd 2 (parent)
  kStepSetsid,
  kStepChdir,
  kStepDup,         // F_DUPFD_CLOEXEC / dup2 / fcntl while placing fds
  kStepCloseRange,  // closing the fds that were not asked for
  kStepRlimit,
  kStepSetgroups,
  kStepSetgid,
  kStepSetuid,
  kStepPdeathsig,
  kStepNoNewPrivs,
  kStepExecve,
  // Namespaces and cgroup (IsolationPlan). The parent writes the maps; the
  // child does the rest.
  kStepUidMap,            // write /proc/PID/uid_map (parent)
  kStepGidMap,            // write /proc/PID/gid_map (parent)
  kStepSetgroupsDeny,     // write "deny" to /proc/PID/setgroups (parent)
  kStepCgroup,            // write "0" to cgroup.procs (child, clone(2) paths)
  kStepHostname,          // sethostname
  kStepMountPropagation,  // mount(NULL, "/", NULL, MS_REC | MS_PRIVATE or MS_SLAVE)
  kStepBindRoot,          // mount(root, root, MS_BIND | MS_REC)
  kStepChdirRoot,         // chdir(root), then chdir("/") once it is the root
  kStepMountProc,         // mount("proc", "/proc", "proc")
  kStepPivotRoot,         // pivot_root(".", ".")
  kStepDetachOldRoot,     // umount2(".", MNT_DETACH)
  kStepPipe,              // pipe2 for the report pipe (parent, qemu-user)
  kStepUnshareCgroup,     // unshare(CLONE_NEWCGROUP) once in the cgroup (child, clone(2) paths)
};

const char* StepName(int step);

// The namespaces, user mappings and cgroup of a child. As initialised
// here: the plain spawn, with no step and no cost of its own.
struct IsolationPlan {
  uint64_t clone_flags = 0;  // CLONE_NEW* bits
  // Lines "inside outside count\n", each map written by the parent in one
  // write(2) while the child waits; nullptr: not written.
  const char* uid_map = nullptr;
  size_t uid_map_len = 0;
  const char* gid_map = nullptr;
  size_t gid_map_len = 0;
  bool deny_setgroups = false;   // write "deny" to /proc/PID/setgroups before gid_map
  const char* hostname = nullptr;  // nullptr: keep (needs CLONE_NEWUTS)
  size_t hostname_len = 0;
  unsigned long propagation = 0;  // with CLONE_NEWNS: MS_PRIVATE or MS_SLAVE, applied to / with MS_REC
  const char* root = nullptr;     // nullptr: keep; else pivot_root into it (needs CLONE_NEWNS)
  bool mount_proc = false;        // a new /proc (inside `root` when given)
  int cgroup_fd = -1;             // -1: none; a cgroup v2 directory for CLONE_INTO_CGROUP
  int cgroup_procs_fd = -1;       // its cgroup.procs, written by the child where clone3 is not used
};

// Everything the child does, decided and allocated by the parent before the
// clone. The child only reads this (and writes `temp`, `listen_pid`,
// `listen_pidfdid`, `*listen_pidfdid_slot`, `err`).
struct ChildPlan {
  const char* path;    // absolute or relative to cwd; no PATH search here
  char* const* argv;   // NULL-terminated
  char* const* envp;   // NULL-terminated
  const char* cwd;     // nullptr: keep the parent's

  FdMove* moves;
  int nmoves;
  int max_target;       // highest child fd number asked for (at least 2, below fd_limit)
  const int* keep;      // sorted child fd numbers >= 3 that must survive
  int nkeep;
  bool close_others;    // close everything >= 3 not in `keep`
  unsigned int fd_limit;  // the soft RLIMIT_NOFILE: every fd number of the child is below it
  int close_method;       // CloseMethod to try first; filled in by SpawnChild

  bool setsid;
  int pdeathsig;        // 0: none
  pid_t parent_pid;     // getpid() of the parent, taken before the clone
  int umask;            // -1: keep
  const RlimitSetting* rlimits;
  int nrlimits;
  bool no_new_privs;
  int64_t uid;          // -1: keep
  int64_t gid;          // -1: keep
  const gid_t* groups;  // used when ngroups >= 0
  int ngroups;
  bool drop_groups;     // ngroups < 0: still try to drop every group (EPERM ignored)

  uint64_t default_signals;  // bit n-1: set signal n to SIG_DFL even if the parent ignores it

  IsolationPlan iso;

  char* listen_pid;     // nullptr, or 21 bytes inside an envp string to hold the child's pid
  // nullptr, or 21 bytes inside the last envp string for the child's pidfd
  // inode id (LISTEN_PIDFDID); when the kernel cannot tell, the child ends
  // the environment before that string instead, through listen_pidfdid_slot.
  char* listen_pidfdid;
  char** listen_pidfdid_slot;

  // Filled in by SpawnChild for the child.
  bool reset_handlers;  // false when the kernel already did it (CLONE_CLEAR_SIGHAND)
  uint64_t old_mask;    // the parent's signal mask, restored before execve
  bool handshake;        // no CLONE_VFORK: the child waits for `go` (user namespace maps)
  bool cgroup_by_clone;  // CLONE_INTO_CGROUP placed the child; else it writes cgroup_procs_fd
  bool unshare_cgroup;   // then CLONE_NEWCGROUP waits until it has: the namespace's root is its cgroup
  // The child's own fds, -1 for none: where it reports a failure when it
  // does not share our memory (qemu-user), and a pidfd of this process for
  // the pdeathsig check inside a new pid namespace (getppid() is 0 there).
  // Close-on-exec; the child keeps them out of the fd map and of the fds it
  // closes, and stores the numbers it moved them to in child_*.
  int report_fd = -1;
  int parent_pidfd = -1;
  int child_report_fd = -1;
  int child_parent_pidfd = -1;

  // The handshake without CLONE_VFORK: the parent sets `go` (a futex) once
  // the maps are written; the kernel clears `child_tid` (CLONE_CHILD_CLEARTID)
  // and wakes the parent when the child releases our memory at execve or exit.
  volatile uint32_t go;
  volatile pid_t child_tid;

  // Written by the child on failure, read by the parent after the clone
  // returns: CLONE_VM means the child writes straight into this struct.
  volatile int err;
  volatile int step;
};

struct SpawnOutcome {
  pid_t pid;
  int pidfd;
  int err;   // errno when SpawnChild returns -1
  int step;  // Step when SpawnChild returns -1
};

// Creates the child and waits (the vfork way) until it has called execve or
// failed. Returns 0 with pid and a CLOEXEC pidfd, or -1 with err/step; on
// failure no child is left behind (a child that failed before execve is
// reaped here) and no fd is leaked.
int SpawnChild(ChildPlan* plan, SpawnOutcome* out);

// fd itself when it is 3 or above; otherwise a CLOEXEC duplicate at 3 or
// above, with fd closed. -1 (errno set, fd still open and the caller's) when
// no number is left. Every fd the spawn path creates in the parent goes
// through this: with 0-2 closed, the kernel hands out those numbers first,
// and Node takes whatever it finds at 0-2 for its stdio (its lazy
// process.stderr wraps a pipe end at fd 2 and throws EEXIST).
// child_process keeps its fds at 3 and above too.
int MoveAboveStdio(int fd);

// The inode id of a pidfd for the calling process, as systemd sets and
// checks LISTEN_PIDFDID: on pidfs (Linux 6.9+) every pidfd for a process
// has the same inode, whose 64-bit number no other process gets while the
// system runs. False when the kernel cannot tell (no pidfs: one inode for
// all pidfds; no pidfd_open before 5.3; out of fds). Plain system calls
// only, so the child can call it before execve.
bool SelfPidfdInodeId(uint64_t* id);

// For a child that cannot be handed out after all: SIGKILL it, reap it and
// close its pidfd, so it leaves no zombie.
void KillAndReap(pid_t pid, int pidfd);

// How the child is created. The first that works on this kernel is kept;
// tests force each in turn so every path is exercised on a new kernel.
enum CloneMode : int {
  kModeClone3ClearSighand = 0,  // clone3 + CLONE_PIDFD + CLONE_CLEAR_SIGHAND (5.5)
  kModeClone3 = 1,              // clone3 + CLONE_PIDFD (5.3), handlers reset by hand
  kModeClonePidfd = 2,          // clone(2) + CLONE_PIDFD (5.2)
  kModeClonePidfdOpen = 3,      // clone(2), then pidfd_open (5.3)
};

int GetCloneMode();
void SetCloneMode(int mode);

// How the child closes the fds it was not given; the first that the kernel
// accepts is used. Tests start further down to exercise the fallbacks.
enum CloseMethod : int {
  kCloseRangeCloexec = 0,  // close_range(CLOSE_RANGE_CLOEXEC) (5.11)
  kCloseRange = 1,         // close_range (5.9)
  kCloseLoop = 2,          // close() on every number up to the fd limit
};

int GetCloseMethod();
void SetCloseMethod(int method);

// For tests of the pdeathsig race: when non-zero, the child compares
// getppid() with this instead of the real parent's pid (inside a new pid
// namespace: watches this process's pidfd instead of ours), as if the
// parent had died between the clone and the prctl.
void SetAssumedParentPid(pid_t pid);

// How a child that fails before execve reports it. Shared memory (the plan)
// is the way on a real kernel, where CLONE_VM shares it; qemu-user runs the
// clone as a fork, so a pipe it is there. Found out once per process by a
// probe (kReportUnknown until then); tests force each.
enum ReportMode : int {
  kReportUnknown = -1,
  kReportMemory = 0,
  kReportPipe = 1,
};

int GetReportMode();
void SetReportMode(int mode);

}  // namespace folk
