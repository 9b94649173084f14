// The pidfd syscalls' numbers and waitid's P_PIDFD, for libc headers older
// than them. They are the same on every Linux architecture because they
// were allocated after the syscall table unification.
#pragma once

#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
