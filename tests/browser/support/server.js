// Starts the real quire binary for a browser test, on a fresh SQLite database
// in a temporary folder and a free port, and stops it again.
//
//   import { startServer } from './support/server.js';
//   const server = await startServer();          // quire serve ... --port 0
//   await page.goto(server.url + '/');
//   await server.kill('SIGKILL');                 // resolves once it exited
//   await server.restart();                       // same port, same database
//   await server.stop();                          // SIGTERM, then removes the folder
//
// The binary is $QUIRE_BIN, else <repo>/build/quire. Every child still running
// when the test process ends is killed.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const QUIRE_BIN = process.env.QUIRE_BIN || join(REPO_ROOT, 'build', 'quire');

// Generous: a sanitizer build starts slowly on a loaded 2-core machine.
const DEFAULT_START_TIMEOUT_MS = Number(process.env.QUIRE_START_TIMEOUT_MS) || 30000;
const LISTENING = /quire listening on (http:\/\/(\S+):(\d+))/;

// Children alive in this process, killed when it ends however it ends, and
// the temp folders not yet removed by stop().
const live = new Set();
const tempDirs = new Set();
function killAll() {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    killAll();
    process.kill(process.pid, signal); // the default action, now that the listener is gone
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Spawns `quire serve ...` and resolves once it prints its listening line.
// Rejects (with the child's stderr) when it exits first or takes too long.
function launch(bin, args, env, timeoutMs, log) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    const run = { child, stdout: '', stderr: '', exit: null, exited: null, killedBy: null };
    run.exited = new Promise((r) => {
      child.on('exit', (code, signal) => {
        live.delete(child);
        run.exit = { code, signal };
        r(run.exit);
      });
    });
    let settled = false;
    const fail = (why) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      const err = new Error(`quire ${why}: ${bin} ${args.join(' ')}\n--- stderr ---\n${run.stderr}`);
      err.run = run;
      reject(err);
    };
    const timer = setTimeout(() => fail(`did not print its listening line within ${timeoutMs} ms`), timeoutMs);
    child.on('error', (e) => fail(`could not be started (${e.message})`));
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      run.stdout += chunk;
      log.stdout += chunk;
      const m = LISTENING.exec(run.stdout);
      if (m && !settled) {
        settled = true;
        clearTimeout(timer);
        resolvePromise({ run, url: m[1], address: m[2], port: Number(m[3]) });
      }
    });
    child.stderr.on('data', (chunk) => {
      run.stderr += chunk;
      log.stderr += chunk;
    });
    run.exited.then((e) => fail(`exited (code ${e.code}, signal ${e.signal}) before listening`));
  });
}

/**
 * Starts quire. Options (all optional):
 *   bin          path of the binary (default $QUIRE_BIN or <repo>/build/quire)
 *   databaseUrl  default sqlite:<fresh temp dir>/quire.db
 *   port         default 0 (a free one)
 *   address      default: quire's own (127.0.0.1)
 *   heartbeat    seconds, default 1
 *   args         further arguments after `serve ...`, e.g. ['--invite-ttl', '1h']
 *   env          extra environment variables
 *   startTimeoutMs  default 30000 ($QUIRE_START_TIMEOUT_MS)
 *   keep         true: stop() leaves the temp dir in place
 */
export async function startServer(options = {}) {
  const bin = options.bin || QUIRE_BIN;
  const dir = mkdtempSync(join(tmpdir(), 'quire-browser-'));
  if (!options.keep) tempDirs.add(dir);
  const databaseUrl = options.databaseUrl || `sqlite:${join(dir, 'quire.db')}`;
  const heartbeat = options.heartbeat ?? 1;
  const env = { ...process.env, ...(options.env || {}) };
  const timeoutMs = options.startTimeoutMs || DEFAULT_START_TIMEOUT_MS;
  const log = { stdout: '', stderr: '' }; // every run, in order
  const argsFor = (port) => [
    'serve',
    '--database-url', databaseUrl,
    '--port', String(port),
    '--heartbeat', String(heartbeat),
    ...(options.address ? ['--address', options.address] : []),
    ...(options.args || []),
  ];

  let current;
  try {
    current = await launch(bin, argsFor(options.port ?? 0), env, timeoutMs, log);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
    throw e;
  }

  const server = {
    url: current.url, // http://ADDR:PORT, no trailing slash
    port: current.port,
    address: current.address,
    databaseUrl,
    dir,
    get pid() {
      return current.run.exit ? undefined : current.run.child.pid;
    },
    get running() {
      return current.run.exit === null;
    },
    // Everything the server(s) wrote so far, across restarts.
    get stdout() {
      return log.stdout;
    },
    get stderr() {
      return log.stderr;
    },
    // Sends a signal (default SIGTERM) and resolves with { code, signal } once it exited.
    async kill(signal = 'SIGTERM') {
      const run = current.run;
      if (run.exit) return run.exit;
      run.killedBy = signal;
      run.child.kill(signal);
      return run.exited;
    },
    // Starts quire again on the same port and database (after kill()). The port
    // can be busy for a moment after a crash: retries for up to retryMs.
    async restart({ retryMs = 5000 } = {}) {
      if (!current.run.exit) throw new Error('restart(): quire is still running; kill() it first');
      const deadline = Date.now() + retryMs;
      for (;;) {
        try {
          current = await launch(bin, argsFor(server.port), env, timeoutMs, log);
          return server;
        } catch (e) {
          const busy = e.run && e.run.exit && e.run.exit.code !== 0 && /in use|EADDRINUSE|bind/i.test(e.run.stderr);
          if (!busy || Date.now() >= deadline) throw e;
          await sleep(100);
        }
      }
    },
    // SIGTERM (SIGKILL after graceMs), then removes the temp dir unless
    // options.keep. Throws (with stderr) when quire had died by itself or did not
    // exit cleanly with code 0: a crash, or a sanitizer report.
    async stop({ graceMs = 10000 } = {}) {
      const run = current.run;
      let problem = null;
      if (run.exit) {
        if (!run.killedBy) problem = 'had exited by itself';
      } else {
        run.child.kill('SIGTERM');
        const timer = setTimeout(() => run.child.kill('SIGKILL'), graceMs);
        await run.exited;
        clearTimeout(timer);
        if (run.exit.code !== 0) problem = 'did not exit cleanly on SIGTERM';
      }
      if (!options.keep) {
        rmSync(dir, { recursive: true, force: true });
        tempDirs.delete(dir);
      }
      if (problem) {
        throw new Error(`quire ${problem} (code ${run.exit.code}, signal ${run.exit.signal})\n--- stderr ---\n${log.stderr}`);
      }
      return run.exit;
    },
  };
  return server;
}
