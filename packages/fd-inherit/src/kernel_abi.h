// The pieces of the kernel's interface the spawn code uses that a build
// machine's headers may lack, or not declare as we need them: written out
// here, once, so a prebuild does not depend on how new the kernel headers
// of the machine that built it were. Every value is fixed by the kernel's
// ABI. The system headers that declare some of these come first: a #define
// made before them would break their own declaration (glibc's P_PIDFD is an
// enum constant).
#pragma once

#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
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

// The kernel's sigset_t on the 64-bit architectures we build for.
constexpr size_t kSigsetSize = sizeof(uint64_t);

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

// struct rlimit64 as prlimit64(2) takes it: two 64-bit values on every
// architecture, whatever libc's rlim_t is.
struct KernelRlimit {
  uint64_t soft;
  uint64_t hard;
};

}  // namespace folk
