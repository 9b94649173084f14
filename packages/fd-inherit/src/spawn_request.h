// Plan-from-JS: the argument of the binding's spawn(), read and checked into
// C data for the spawn core (spawn.h). spawn_request.cc does the reading;
// binding.cc's Spawn hands the result to SpawnChild.
#pragma once

#include <napi.h>

#include <sched.h>
#include <sys/types.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "spawn.h"

namespace folk {

// The namespace flags a plan may ask for, by the names lib/ uses: checked
// against here, and exported to lib/ as NAMESPACES.
struct NamespaceFlag {
  const char* name;
  int flag;
};
inline constexpr NamespaceFlag kNamespaces[] = {
    {"user", CLONE_NEWUSER}, {"pid", CLONE_NEWPID}, {"mount", CLONE_NEWNS},       {"net", CLONE_NEWNET},
    {"uts", CLONE_NEWUTS},   {"ipc", CLONE_NEWIPC}, {"cgroup", CLONE_NEWCGROUP},
};

// Closes its fd when the scope ends, also when a JavaScript exception unwinds it.
struct OwnedFd {
  int fd = -1;
  ~OwnedFd() {
    if (fd != -1) close(fd);
  }
};

// A spawn plan from JavaScript (NativeSpawnPlan in lib/native.ts), checked
// and copied into C data, and the folk::ChildPlan that points into it.
// Copies, not pointers into V8's heap: the child reads these while other
// threads of the parent (V8's GC helpers among them) keep running. Filled
// in by ReadSpawnRequest, then only read; never copied or moved, so the
// plan's pointers into it stay good.
struct SpawnRequest {
  std::string file;
  std::vector<std::string> argv;
  std::vector<std::string> envp;
  std::string cwd;
  bool has_cwd = false;
  int32_t listen_pid_index = -1;      // of "LISTEN_PID=" in envp, or -1
  int32_t listen_pidfdid_index = -1;  // of "LISTEN_PIDFDID=", the last entry, or -1
  std::vector<folk::FdMove> moves;
  std::vector<int> keep;
  OwnedFd dev_null;  // opened for a kDevNull source; closed once the spawn is over
  std::vector<folk::RlimitSetting> rlimits;
  std::vector<gid_t> groups;
  std::string uid_map;  // the IsolationPlan's strings, when given
  std::string gid_map;
  std::string hostname;
  std::string root;
  OwnedFd cgroup;        // the cgroup v2 directory, for CLONE_INTO_CGROUP
  OwnedFd cgroup_procs;  // its cgroup.procs, for the clone(2) paths
  std::vector<char*> argv_ptrs;
  std::vector<char*> envp_ptrs;
  folk::ChildPlan plan = {};

  SpawnRequest() = default;
  SpawnRequest(const SpawnRequest&) = delete;
  SpawnRequest& operator=(const SpawnRequest&) = delete;
};

// Reads `plan` into *r and points r->plan at the copies. Throws a TypeError
// or RangeError for a plan lib/ should never have built, an errno Error for
// an fd or cgroup that cannot be used (with what lib/ needs to name it).
void ReadSpawnRequest(const Napi::Object& plan, SpawnRequest* r);

}  // namespace folk
