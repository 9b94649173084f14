// The namespace and cgroup steps of a spawn (see isolation.h): the child's,
// under the rules in child.h, and the user namespace maps the parent writes
// while the child waits, with raw system calls only for the reason the
// handshake gives.
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mount.h>
#include <unistd.h>

#include "child.h"
#include "isolation.h"
#include "kernel_abi.h"

namespace folk {

namespace {

// Mount flags of the /proc a new pid namespace gets.
constexpr unsigned long kProcFlags = MS_NOSUID | MS_NODEV | MS_NOEXEC;

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

// Writes `data` to /proc/<pid>/<file> in one write(2), as the kernel wants
// a map written. Raw system calls only: the child runs now (see the
// handshake in isolation.h).
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

}  // namespace

// ---- The child's side. ----

// The parent writes the user namespace's maps while we wait here (see the
// handshake in isolation.h). A raw futex wait, the value read again after each
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

// ---- The parent's side. ----

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
// by hand. Neither futex call can fail while the child runs (see isolation.h).
void ReleaseAndWait(ChildPlan* p) {
  p->go = 1;
  syscall(SYS_futex, const_cast<uint32_t*>(&p->go), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  for (;;) {
    const pid_t tid = p->child_tid;
    if (tid == 0) return;
    syscall(SYS_futex, const_cast<pid_t*>(&p->child_tid), FUTEX_WAIT, tid, nullptr, nullptr, 0);
  }
}

}  // namespace folk
