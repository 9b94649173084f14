{
  "targets": [
    {
      "target_name": "fd_inherit",
      "sources": [
        "binding.cc", "spawn_request.cc", "fd_calls.cc", "notify.cc",
        "spawn.cc", "clone.cc", "child.cc", "child_fds.cc", "isolation.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags": ["-fvisibility=hidden"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Werror=return-type"],
      # Bind every symbol at load time. The vfork-style child runs on the
      # parent's memory and must not enter the dynamic linker's lazy PLT
      # resolver (it takes locks and uses a lot of stack).
      "ldflags": ["-Wl,-z,now"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "MACOSX_DEPLOYMENT_TARGET": "11.0"
      }
    }
  ]
}
