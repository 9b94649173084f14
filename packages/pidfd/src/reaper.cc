// ReapLater and StayLoaded: what only pidfd does when an environment ends
// (internal/handles.h, "Where the two packages really differ").
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <unistd.h>

#include <thread>

#include "internal/handles.h"
#include "reaper.h"
#include "syscalls.h"

namespace pidfd {
namespace {

// The thread ReapLater starts runs this library's code (and sleeps in it)
// after the environment that handed it the pidfd is gone, for as long as
// that process runs. Node unloads an addon (dlclose) when a worker
// environment that loaded it is torn down (never one the main thread
// loaded), and once the last reference goes, the library is unmapped: the
// thread then crashed the whole process with SIGSEGV when its process
// exited, or before it even got going. Joining the thread at teardown is no
// answer (the process may run for ever), nor is one process-wide thread
// (its code is in this library too). So the library stays loaded for the
// life of the process: one dlopen reference of our own, taken at the first
// Init and never closed, so that Node's dlclose only ever gives back its own.
//
// What to open is the name the dynamic loader gave the object this function
// lives in (dl_iterate_phdr, in glibc since 2.2.5 under one symbol version;
// dladdr and dlopen moved into libc in 2.34 under new versions, which a
// prebuild linked against would need). That is the name Node's dlopen
// loaded, however the package found the file (node-gyp-build, a static
// require of the .node file: both end in process.dlopen), so glibc finds
// the object already loaded by that name and only counts a reference.
// uv_dlopen is that dlopen, exported by Node. If the handle turns out to be
// another object (musl matches by file, and the file may have been
// replaced), it is closed again and no reference is kept.
struct LoadedObject {
  uintptr_t address;  // in: an address inside the object
  uintptr_t base = 0;  // out: where the object was loaded, and its name
  const char* name = nullptr;
};

int FindLoadedObject(struct dl_phdr_info* info, size_t, void* arg) {
  auto* obj = static_cast<LoadedObject*>(arg);
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    uintptr_t start = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && obj->address >= start && obj->address - start < ph.p_memsz) {
      obj->base = info->dlpi_addr;
      obj->name = info->dlpi_name;
      return 1;
    }
  }
  return 0;
}

bool StayLoaded() {
  LoadedObject self{reinterpret_cast<uintptr_t>(&StayLoaded)};
  if (dl_iterate_phdr(FindLoadedObject, &self) == 0 || self.name == nullptr || self.name[0] == '\0') return false;
  static uv_lib_t lib;  // never closed: that reference is the point
  if (uv_dlopen(self.name, &lib) != 0) {
    uv_dlclose(&lib);  // frees the error message
    return false;
  }
  void* sym = nullptr;
  LoadedObject opened{0};
  if (uv_dlsym(&lib, "napi_register_module_v1", &sym) == 0) {
    opened.address = reinterpret_cast<uintptr_t>(sym);
    dl_iterate_phdr(FindLoadedObject, &opened);
  }
  if (opened.name == nullptr || opened.base != self.base) {
    uv_dlclose(&lib);
    return false;
  }
  return true;
}

}  // namespace

// Whether the library stays loaded for the life of the process; the first
// call decides, once.
bool KeptLoaded() {
  static const bool kept = StayLoaded();
  return kept;
}

// Collect the exit of the process of `fd` (a private duplicate, now ours
// alone) now if it has one, else from a detached thread once it has; the
// fd is closed either way.
// If the library could not be kept loaded (see StayLoaded), no thread,
// which could crash the process: the process is left a zombie from its
// exit until ours ends.
void ReapLater(int fd) {
  siginfo_t si = {};
  long rc = syscall(SYS_waitid, P_PIDFD, fd, &si, WEXITED | WNOHANG, nullptr);
  if (rc == -1 || si.si_pid != 0) {  // reaped now, or nothing to reap (ECHILD)
    folk::ClosePrivate(fd);
    return;
  }
  if (!KeptLoaded()) {
    folk::ClosePrivate(fd);
    return;
  }
  // libuv made the description non-blocking; a blocking waitid would say EAGAIN.
  int fl = fcntl(fd, F_GETFL);
  if (fl != -1 && (fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  try {
    std::thread([fd] {
      siginfo_t info = {};
      while (syscall(SYS_waitid, P_PIDFD, fd, &info, WEXITED, nullptr) == -1 && errno == EINTR) {
      }
      folk::ClosePrivate(fd);
    }).detach();
  } catch (...) {
    folk::ClosePrivate(fd);  // no thread to be had: nothing more can be done for it
  }
}

}  // namespace pidfd
