// Namespaces and cgroup: the steps an IsolationPlan adds to a spawn, on both
// sides of the clone. isolation.cc holds them; CloneOnce (clone.cc) adds the
// CLONE_NEW* flags and CLONE_INTO_CGROUP to the clone itself.
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
// happens in the child, as plain system calls, under the rules in child.h.
#pragma once

#include <sys/types.h>

#include "spawn.h"

namespace folk {

// The child's side. Each returns 0, or -1 with errno and *step.

// The handshake's wait: returns once the parent has written the maps.
void WaitForGo(ChildPlan* p);

// Into the plan's cgroup where the clone did not place us, and only then
// into a new cgroup namespace.
int EnterCgroup(const ChildPlan* p, int* step);

// Hostname, mount propagation, new root, /proc: each when asked for.
int SetUpNamespaces(const ChildPlan* p, int* step);

// The parent's side, while the child waits in WaitForGo.

// setgroups, gid_map and uid_map of the child's user namespace. -1 with
// errno and *step.
int WriteIdMaps(const IsolationPlan& n, pid_t pid, int* step);

// Lets the child go on and sleeps until it has left our memory.
void ReleaseAndWait(ChildPlan* p);

}  // namespace folk
