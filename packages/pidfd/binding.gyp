# The build is defined in src/binding.gyp, which the package ships: a
# binding.gyp at the root of a tarball makes pnpm and Yarn run
# `node-gyp rebuild` on install (they ignore "gypfile": false). This file lets
# node-gyp and prebuildify build from the package root in the repository;
# gyp makes the included file's paths relative to this one.
{ "includes": ["src/binding.gyp"] }
