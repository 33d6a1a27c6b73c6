// Builds dist/: the browser script (IIFE, global `drakon`), the ES module, and one bundled .d.ts.
// The output is byte-for-byte reproducible (pinned tools, no timestamps), so CI can rebuild and diff dist/.

import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { rollup } from 'rollup';
import { dts } from 'rollup-plugin-dts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const banner = '/* drakon client: built from clients/js by `npm run build`; edit src/, not this file */';

const common = {
  absWorkingDir: root,
  entryPoints: ['src/index.ts'],
  bundle: true,
  target: 'es2018',
  platform: 'neutral',
  charset: 'utf8',
  legalComments: 'none',
  banner: { js: banner },
  logLevel: 'warning',
};

rmSync(join(root, 'build'), { recursive: true, force: true });

await build({ ...common, format: 'iife', globalName: 'drakon', outfile: 'dist/drakon.js' });
await build({ ...common, format: 'esm', outfile: 'dist/drakon.mjs' });

execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], {
  cwd: root,
  stdio: 'inherit',
});
const bundle = await rollup({ input: join(root, 'build/types/index.d.ts'), plugins: [dts()] });
await bundle.write({ file: join(root, 'dist/drakon.d.ts'), format: 'es', banner });
await bundle.close();

rmSync(join(root, 'build'), { recursive: true, force: true });
