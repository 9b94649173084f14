// The child: what runs between the clone and execve, on the parent's
// memory. ChildMain (child.cc) is the clone's entry and goes through the
// steps in order; the fd map is carried out by child_fds.cc, the namespace
// and cgroup steps by isolation.cc. spawn.cc says why the child shares the
// parent's memory at all.
//
// Rules for code that runs in the child (ChildMain and what it calls, in
// whichever file):
//  - Everything it needs (argv, envp, the fd plan, the buffer for
//    LISTEN_PID) is built by the parent before the clone. The child never
//    allocates: malloc's locks may be held by another parent thread, and
//    in this address space they stay held.
//  - Only async-signal-safe calls, all plain system calls. Credentials go
//    through syscall(2) directly: glibc's setuid() in a multithreaded
//    process would signal every thread of the parent to change theirs too.
//  - The addon is linked with -z now (binding.gyp) so no call into libc
//    here goes through the lazy PLT resolver; our own functions are built
//    with hidden visibility, so a call from one file of ours to another is
//    a direct call, not a PLT one.
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
#pragma once

#include <stdint.h>

#include "spawn.h"

namespace folk {

// The clone's entry, with the ChildPlan: runs the plan's steps and execs
// the program, or records the failure and exits with 127. Never returns.
int ChildMain(void* plan);

// Decimal digits of v into out (which has room for 21 bytes: 20 digits and
// the NUL), no libc. For LISTEN_PID and LISTEN_PIDFDID, and for the
// /proc/PID paths the parent writes while the child runs.
void FormatDecimal(char* out, uint64_t v);

// The fd map (child_fds.cc). Each returns 0, or -1 with errno.

// The child's own fds (report pipe, parent pidfd) out of the fd map's way,
// into child_report_fd and child_parent_pidfd.
int MoveOwnFds(ChildPlan* p);

// Every move's source at its target; CLOEXEC cleared on those and nothing else.
int PlaceFds(ChildPlan* p);

// Every fd from 3 up that is neither kept nor the child's own, closed (or
// marked to close at execve).
int CloseOthers(const ChildPlan* p);

}  // namespace folk
