// Runs the browser tests: every *.test.js below this folder (node_modules
// aside), one file at a time, with `node --test`. ctest runs this as
// browser/client; by hand: `node tests/browser/run.js [files...] [--node-option=value...]`,
// e.g. --test-name-pattern=restart.
// Fails in one line when what the tests need is missing, never skips.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

function fail(message) {
  console.error(`browser tests: ${message}`);
  process.exit(1);
}

if (!existsSync(join(here, 'node_modules', 'playwright-core', 'package.json'))) {
  fail(`${join(here, 'node_modules', 'playwright-core')} is missing: run \`npm ci --prefix tests/browser\` (tools/test.sh does)`);
}
const chromium = process.env.QUIRE_CHROMIUM || '/usr/bin/chromium';
if (!existsSync(chromium)) {
  fail(`${chromium} is missing: run tools/install-deps.sh (Debian package chromium)`);
}

// The files are listed here rather than handing node --test the folder:
// Node 18 and 20 search a folder, Node 22 and later take glob patterns only.
function testFiles(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory() && e.name !== 'node_modules') out.push(...testFiles(join(dir, e.name)));
    else if (e.isFile() && e.name.endsWith('.test.js')) out.push(join(dir, e.name));
  }
  return out.sort();
}

const options = process.argv.slice(2).filter((a) => a.startsWith('-'));
const named = process.argv.slice(2).filter((a) => !a.startsWith('-')).map((f) => resolve(f));
const files = named.length > 0 ? named : testFiles(here);
if (files.length === 0) fail(`no *.test.js files in ${here}`);

const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...options, ...files], {
  stdio: 'inherit',
});
if (r.error) fail(`could not run node --test: ${r.error.message}`);
process.exit(r.status ?? 1);
