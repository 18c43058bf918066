import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { choosesCompilers, heldCompilers, holdStartupTiering, type Compiler } from './startup-tiering.js';

const major = Number(process.versions.node.split('.')[0]);

/** The optimizing compilers this Node's V8 has on by default, from `node --v8-options`. */
function compilersOnByDefault(): Compiler[] {
  const text = execFileSync(process.execPath, ['--v8-options'], { encoding: 'utf8', maxBuffer: 16 << 20 });
  const on = (flag: string) => {
    const m = new RegExp(`^\\s+--${flag} \\(.*\\n\\s+type: bool\\s+default: (--(?:no-)?${flag})$`, 'm').exec(text);
    assert.ok(m, `--v8-options has no --${flag}`);
    return m[1] === `--${flag}`;
  };
  return (['turbofan', 'maglev'] as const).filter(on);
}

describe('V8 compilers held while tunnel-node starts (node/startup-tiering.ts)', () => {
  it(`holds exactly the compilers Node ${major}'s V8 has on by default (so the release restores its defaults)`, () => {
    // A major not measured holds nothing and fails here: measure it (bench:footprint's idle relay), then add it.
    assert.deepEqual([...heldCompilers(major)].sort(), compilersOnByDefault().sort());
  });

  it('holds per major: TurboFan on 20 and 22, TurboFan and Maglev on 24, nothing on majors not measured', () => {
    assert.deepEqual(heldCompilers(20), ['turbofan']);
    assert.deepEqual(heldCompilers(22), ['turbofan']);
    assert.deepEqual(heldCompilers(24), ['turbofan', 'maglev']);
    assert.deepEqual(heldCompilers(18), []);
    assert.deepEqual(heldCompilers(26), []);
  });

  it('turns the held compilers off and, on release, back on once', () => {
    const set: string[] = [];
    const hold = holdStartupTiering({ major: 24, execArgv: [], nodeOptions: undefined, setFlags: (f) => set.push(f) });
    assert.deepEqual(set, ['--no-turbofan', '--no-maglev']);
    hold.release();
    hold.release();
    assert.deepEqual(set, ['--no-turbofan', '--no-maglev', '--turbofan', '--maglev']);
  });

  it("holds nothing when the process was given its own flag about V8's compilers", () => {
    for (const flag of ['--no-opt', '--max-opt=2', '--jitless', '--maglev', '--no-turbofan', '--lite-mode']) {
      assert.ok(choosesCompilers([flag], undefined), flag);
      assert.ok(choosesCompilers([], `--max-old-space-size=100 ${flag}`), `NODE_OPTIONS ${flag}`);
      const set: string[] = [];
      const hold = holdStartupTiering({ major: 24, execArgv: [flag], nodeOptions: undefined, setFlags: (f) => set.push(f) });
      hold.release();
      assert.deepEqual([hold.held, set], [[], []], flag);
    }
    for (const flag of ['--optimize-for-size', '--max-old-space-size=200', '--enable-source-maps']) assert.ok(!choosesCompilers([flag], flag), flag);
  });

  it('in a real process: nothing is optimized while held, and a hot function is after the release', () => {
    // A child with V8's natives: %GetOptimizationStatus bit 4 is "has optimized code" (Maglev or TurboFan).
    const here = fileURLToPath(new URL('./startup-tiering.js', import.meta.url));
    const script = `
      const { holdStartupTiering } = await import(${JSON.stringify(here)});
      const hold = holdStartupTiering({ execArgv: [], nodeOptions: '' });
      function hot(n) { let s = 0; for (let i = 0; i < n; i++) s += i ^ s; return s; }
      const optimized = () => (%GetOptimizationStatus(hot) & 16) !== 0;
      for (let i = 0; i < 200000; i++) hot(50);
      const whileHeld = optimized();
      hold.release();
      let calls = 0;
      while (!optimized() && calls < 50000000) { hot(50); calls++; }
      process.stdout.write(JSON.stringify({ held: hold.held, whileHeld, afterRelease: optimized() }));
    `;
    const out = JSON.parse(execFileSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', script], { encoding: 'utf8' })) as Record<string, unknown>;
    assert.deepEqual(out, { held: heldCompilers(major), whileHeld: false, afterRelease: true });
  });
});
