// Creating the child: clone3 or clone(2) on a stack of its own, in the
// first way this kernel accepts (CloneMode in spawn.h), and the probe that
// tells whether CLONE_VM really shares our memory here (ReportMode). The
// parent's side only; spawn.cc says why the clone looks the way it does.
// All of it runs with every signal blocked (SpawnChild).
#pragma once

#include <sys/types.h>

#include "spawn.h"

namespace folk {

// The low end of this thread's child stack, made on first use and kept;
// nullptr with errno when it cannot be mapped.
char* ThreadStack();

// Creates the child from the plan, running ChildMain on the stack at
// `stack_low`: the pid, or -1 with *err. *pidfd is the child's pidfd, or -1
// when the clone made none. Fills in the plan's fields that depend on how
// the child was made (reset_handlers, cgroup_by_clone, unshare_cgroup).
pid_t CloneChild(ChildPlan* p, char* stack_low, int* pidfd, int* err);

// Finds out, with a child that only sets a flag, whether a CLONE_VM child
// writes our memory: kReportMemory, else kReportPipe. The answer is kept
// for the process; a probe that cannot be made answers kReportPipe for
// now and is made again next time.
int ProbeReportMode(char* stack_low);

}  // namespace folk
