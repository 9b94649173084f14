// php/ScriptExit.php on its own, in php-cli: exit() caught as a class the
// worker's loop names, and that class safe to look into as any other.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXAMPLE, requirePhp } from './helpers.js';

function php(code: string, ini: string[] = []) {
  requirePhp();
  const script = `require ${JSON.stringify(join(EXAMPLE, 'php', 'ScriptExit.php'))}; $installed = Folk\\AppServer\\ScriptExit::install(); ${code}`;
  const r = spawnSync('php', [...ini.flatMap((d) => ['-d', d]), '-r', script], { encoding: 'utf8' });
  return { status: r.status, signal: r.signal, out: r.stdout, err: r.stderr };
}

describe('ScriptExit', () => {
  it('catches exit() from deep in a script: finally blocks skipped, a catch (Throwable) passed by, destructors run', () => {
    const r = php(`
      final class D { public function __construct(public string $n) {} public function __destruct() { echo "[destructed {$this->n}]"; } }
      function leave() { $d = new D('inner'); try { exit('bye'); } catch (\\Throwable) { echo '[caught by the script]'; } finally { echo '[finally]'; } }
      try { $outer = new D('outer'); leave(); echo '[not reached]'; } catch (Folk\\AppServer\\ScriptExited) { echo '[caught by the loop]'; }
      echo '[goes on]';`);
    expect(r).toEqual({ status: 0, signal: null, out: 'bye[destructed inner][caught by the loop][goes on][destructed outer]', err: '' });
  });

  it('leaves a class that method_exists(), reflection and a walk over get_declared_classes() find empty, not a crash', () => {
    const r = php(`
      $c = Folk\\AppServer\\ScriptExited::class;
      $seen = [$installed, class_exists($c, false), method_exists($c, 'x'), property_exists($c, 'y'), defined("$c::Z"), is_callable([$c, 'x']),
        (new ReflectionClass($c))->hasMethod('x'), get_class_methods($c), (new ReflectionClass($c))->getConstants(), is_subclass_of($c, Throwable::class)];
      foreach (get_declared_classes() as $k) { method_exists($k, 'register'); }
      echo json_encode($seen);`);
    expect(r).toEqual({ status: 0, signal: null, out: JSON.stringify([true, true, false, false, false, false, false, [], [], false]), err: '' });
  });

  it("forgets a caught exit()'s status: a process that ends later, as a worker ends when its client aborts, exits with its own", () => {
    const r = php(`try { exit(3); } catch (Folk\\AppServer\\ScriptExited) { Folk\\AppServer\\ScriptExit::endIfFatal(); echo '[caught]'; }`);
    expect(r).toEqual({ status: 0, signal: null, out: '[caught]', err: '' });
  });

  it('tells a fatal error PHP unwound the same way from an exit(): endIfFatal() goes on to end the process', () => {
    const r = php(`
      try { eval('$all = str_repeat("x", 32 << 20);'); } catch (Folk\\AppServer\\ScriptExited) { echo '[unwound]'; Folk\\AppServer\\ScriptExit::endIfFatal(); echo '[not reached]'; }`, ['display_errors=0', 'log_errors=0', 'memory_limit=16M']);
    expect({ status: r.status, out: r.out }).toEqual({ status: 255, out: '[unwound]' });
  });

  it('steps aside without FFI: install() says no, and exit() ends the process as ever', () => {
    const r = php(`echo json_encode($installed); try { exit(3); } catch (Folk\\AppServer\\ScriptExited) { echo '[caught]'; }`, ['ffi.enable=0']);
    expect(r).toEqual({ status: 3, signal: null, out: 'false', err: '' });
  });
});
