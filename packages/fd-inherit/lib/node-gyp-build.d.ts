declare module 'node-gyp-build' {
  /** Loads the addon for this platform from `dir`/build or `dir`/prebuilds. */
  function nodeGypBuild(dir: string): unknown;
  export = nodeGypBuild;
}
