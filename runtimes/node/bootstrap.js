// bootstrap is faasplane's Node.js runtime: the process a warm pod of runtime
// "node" runs before any function is known, which then hot-loads one.
//
// It speaks the runtime protocol of RUNTIMES.md. Started by the agent with
// PORT, FAAS_CONTROL_FD, FAAS_EVENT_FD and FAAS_LISTEN_FD in its
// environment, it serves on the listening socket the agent passes (or
// listens on 127.0.0.1:$PORT without one) and reports {"type": "ready"} on
// the event pipe. It then
// reads one load message from the control pipe: it applies the function's
// environment, changes into its code directory, requires the entry
// ("index.js" or "index.js:handler"; an .mjs entry is imported), reports
// "loaded" (or "load_failed" with the error and its stack) and serves
// invocations over HTTP/1.1 until SIGTERM, when it stops accepting, lets
// the requests in flight finish and exits 0. The end of the control pipe
// (the agent is gone) stops it the same way.
//
// Built-in modules only; Node.js 18 or later.
'use strict';

const http = require('http');
const net = require('net');
const fs = require('fs');
const path = require('path');
const faas = require('./lib/faas'); // the module that require('faas') finds (NODE_PATH)

const MAX_BODY = Number(process.env.FAAS_MAX_BODY_BYTES || 64 << 20);
const INIT_PATH_DEFAULT = '/_faas/init';
const port = Number(process.env.PORT);
const eventFd = Number(process.env.FAAS_EVENT_FD || 4);
const controlFd = Number(process.env.FAAS_CONTROL_FD || 3);

// oneLine returns s as one line of printable text of at most limit bytes,
// safe for a header value.
function oneLine(s, limit = 512) {
  let out = String(s).replace(/[\x00-\x1f\x7f]/g, ' ');
  if (Buffer.byteLength(out) > limit) {
    out = Buffer.from(out).subarray(0, limit).toString('utf8').replace(/\uFFFD+$/, '');
  }
  return out;
}

function send(msg) {
  fs.writeSync(eventFd, JSON.stringify(msg) + '\n');
}

let fn = null; // the loaded function
let stopping = false;

function errorName(e) {
  return e && e.name ? `${e.name}: ${e.message}` : String(e);
}

async function load(msg) {
  for (const [k, v] of Object.entries(msg.env || {})) process.env[k] = v;
  const dir = msg.code_dir;
  process.chdir(dir);
  let entry = msg.entry || 'index.js';
  let name = 'handler';
  const colon = entry.lastIndexOf(':');
  if (colon > 0) {
    name = entry.slice(colon + 1);
    entry = entry.slice(0, colon);
  }
  process.argv = [process.argv[0], entry, ...(msg.args || [])];
  const file = path.resolve(dir, entry);
  let mod;
  if (file.endsWith('.mjs')) {
    mod = await import(require('url').pathToFileURL(file).href);
  } else {
    mod = require(file);
  }
  const handler = mod[name];
  if (typeof handler !== 'function') throw new TypeError(`${entry} exports no function ${JSON.stringify(name)}`);
  const init = mod.init;
  if (init !== undefined && typeof init !== 'function') throw new TypeError(`${entry}: init is not a function`);
  // No init path: the function has no init hook ("no_init"), and the agent
  // never calls one, so nothing waits for it.
  const initPath = msg.init_path || '';
  return {
    handler, init, initPath, functionId: msg.function_id || '',
    ready: init === undefined || initPath === '', attempts: 0, initChain: Promise.resolve(),
  };
}

function writeError(res, status, code, message, rid) {
  const msg = oneLine(message);
  const body = `${code}: ${msg}\n`;
  if (res.headersSent) {
    res.destroy(new Error(msg));
    return;
  }
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'X-Faas-Error-Code': code,
    'X-Faas-Error-Message': msg,
    'X-Faas-Request-Id': oneLine(rid, 128),
  });
  res.end(body);
}

const dropped = new Set(['content-length', 'transfer-encoding', 'connection', 'x-faas-error-source']);

function setHeaders(res, headers) {
  for (const [k, v] of headers) {
    if (!dropped.has(k.toLowerCase())) res.setHeader(k, v);
  }
}

function isIterable(v) {
  return v != null && typeof v === 'object' &&
    (typeof v[Symbol.asyncIterator] === 'function' || (typeof v[Symbol.iterator] === 'function' && typeof v.next === 'function'));
}

async function stream(res, status, chunks, rid) {
  if (!res.hasHeader('content-type')) res.setHeader('Content-Type', 'application/octet-stream');
  res.writeHead(status);
  res.flushHeaders();
  try {
    for await (const chunk of chunks) {
      if (chunk == null || chunk.length === 0) continue;
      if (!res.write(typeof chunk === 'string' ? chunk : Buffer.from(chunk.buffer || chunk, chunk.byteOffset, chunk.byteLength))) {
        await new Promise((resolve) => res.once('drain', resolve));
      }
    }
  } catch (e) {
    // Too late for a status: break the body off.
    faas.log('handler failed while streaming', { level: 'error', request_id: rid, error: oneLine(errorName(e)), stack: String(e && e.stack) });
    res.destroy(e instanceof Error ? e : new Error(String(e)));
    return;
  }
  res.end();
}

async function writeResult(req, res, result, rid) {
  if (typeof Response !== 'undefined' && result instanceof Response) {
    setHeaders(res, result.headers);
    if (result.body == null || req.method === 'HEAD') {
      const body = result.body == null ? Buffer.alloc(0) : Buffer.from(await result.arrayBuffer());
      res.setHeader('Content-Length', req.method === 'HEAD' ? 0 : body.length);
      res.writeHead(result.status);
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    await stream(res, result.status, result.body, rid);
    return;
  }
  let body = result;
  if (result == null) {
    res.writeHead(204);
    res.end();
    return;
  }
  if (typeof result === 'string') {
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    body = Buffer.from(result);
  } else if (Buffer.isBuffer(result) || result instanceof Uint8Array) {
    res.setHeader('Content-Type', 'application/octet-stream');
    body = Buffer.from(result.buffer, result.byteOffset, result.byteLength);
  } else if (isIterable(result)) {
    await stream(res, 200, result, rid);
    return;
  } else {
    res.setHeader('Content-Type', 'application/json');
    body = Buffer.from(JSON.stringify(result));
  }
  res.setHeader('Content-Length', body.length);
  res.writeHead(200);
  res.end(req.method === 'HEAD' ? undefined : body);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    let total = 0;
    req.on('data', (c) => {
      total += c.length;
      if (total > MAX_BODY) {
        reject(new faas.HTTPError(413, `request body larger than ${MAX_BODY} bytes`, 'too_large'));
        req.destroy();
        return;
      }
      parts.push(c);
    });
    req.on('end', () => resolve(parts.length === 1 ? parts[0] : Buffer.concat(parts)));
    req.on('error', reject);
  });
}

async function serveInit(req, res, rid) {
  if (req.method !== 'POST') {
    writeError(res, 405, 'method_not_allowed', 'the init hook takes POST', rid);
    return;
  }
  await readBody(req);
  // Attempts are serialized: each waits for the one before.
  const attempt = fn.initChain.then(async () => {
    if (fn.ready) return { status: 200, body: 'already initialized\n' };
    fn.attempts++;
    try {
      if (fn.init) await fn.init();
    } catch (e) {
      const msg = oneLine(e instanceof faas.HTTPError ? e.message : errorName(e));
      faas.log('init failed', { level: 'error', attempt: fn.attempts, error: msg, stack: String(e && e.stack) });
      return { status: 500, body: msg + '\n' };
    }
    fn.ready = true;
    return { status: 200, body: 'initialized\n' };
  });
  fn.initChain = attempt.then(() => {}, () => {});
  const r = await attempt;
  res.writeHead(r.status, {
    'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(r.body),
    'X-Faas-Init-Attempts': String(fn.attempts),
  });
  res.end(r.body);
}

async function serve(req, res) {
  const rid = req.headers['x-faas-request-id'] || '';
  if (stopping) res.setHeader('Connection', 'close');
  if (fn === null) {
    writeError(res, 503, 'not_ready', 'no function is loaded', rid);
    return;
  }
  const q = req.url.indexOf('?');
  const pathname = q < 0 ? req.url : req.url.slice(0, q);
  if (fn.initPath !== '' && pathname === fn.initPath) {
    await serveInit(req, res, rid);
    return;
  }
  if (!fn.ready) {
    writeError(res, 503, 'not_ready', 'function not initialized', rid);
    return;
  }
  let result;
  try {
    const body = await readBody(req);
    const request = {
      method: req.method,
      path: pathname,
      query: new URLSearchParams(q < 0 ? '' : req.url.slice(q + 1)),
      headers: req.headers,
      body,
      requestId: rid,
      functionId: req.headers['x-faas-function-id'] || fn.functionId,
      text() { return body.toString('utf8'); },
      json() { return JSON.parse(body.toString('utf8')); },
      log(msg, attrs) { faas.log(msg, { ...attrs, request_id: rid }); },
    };
    result = await fn.handler(request);
  } catch (e) {
    if (e instanceof faas.HTTPError) {
      writeError(res, e.status, e.code, e.message, rid);
      return;
    }
    faas.log('handler failed', { level: 'error', request_id: rid, error: oneLine(errorName(e)), stack: String(e && e.stack) });
    writeError(res, 500, 'internal', errorName(e), rid);
    return;
  }
  try {
    await writeResult(req, res, result, rid);
  } catch (e) {
    faas.log('bad handler result', { level: 'error', request_id: rid, error: oneLine(errorName(e)) });
    writeError(res, 500, 'internal', 'bad handler result: ' + errorName(e), rid);
  }
}

const server = http.createServer((req, res) => {
  // Once stopping, a connection whose last answer is out is closed, so that
  // the server's close completes when the requests in flight have.
  res.on('finish', () => {
    if (stopping && server.closeIdleConnections) setImmediate(() => server.closeIdleConnections());
  });
  serve(req, res).catch((e) => res.destroy(e));
});
// The agent keeps idle connections for 90 s: close them later than it does,
// so that it never sends a request on a connection being closed.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 60_000;
server.requestTimeout = 0; // the agent bounds invocations
server.maxHeadersCount = 0;

let control = null;

function stop() {
  if (fn === null) process.exit(0); // nothing loaded: nothing to finish
  if (stopping) return;
  stopping = true;
  if (control) control.destroy();
  server.close(() => process.exit(0));
  if (server.closeIdleConnections) server.closeIdleConnections();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

// warmUp sends a few requests through the whole serving path with a
// stand-in function before the bootstrap says it is ready: V8 compiles
// functions lazily, and the first requests of a fresh process otherwise pay
// for it (5 to 15 ms each, measured) on the cold-start path. The stand-in
// runs no function code, and fn is null again afterwards.
async function warmUp() {
  fn = {
    handler: async (req) => (req.path === '/json' ? { ok: true } : req.body.length > 0 ? req.body : 'ok'),
    init: async () => {}, initPath: INIT_PATH_DEFAULT, functionId: '', ready: false, attempts: 0, initChain: Promise.resolve(),
  };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const call = (method, p, body) => new Promise((resolve) => {
    const req = http.request({ agent, host: '127.0.0.1', port: server.address().port, method, path: p }, (res) => {
      res.resume();
      res.on('end', resolve);
      res.on('error', resolve);
    });
    req.on('error', resolve);
    req.end(body);
  });
  try {
    for (let i = 0; i < 3; i++) {
      await call('POST', INIT_PATH_DEFAULT);
      await call('GET', '/warm?up=1');
      await call('POST', '/warm', 'up');
      await call('GET', '/json');
    }
  } finally {
    fn = null;
    agent.destroy();
  }
}

// The agent's socket, bound and listening, when it passes one; else PORT.
const listenFd = process.env.FAAS_LISTEN_FD;
server.listen(listenFd ? { fd: Number(listenFd) } : { port, host: '127.0.0.1' }, async () => {
  if (process.env.FAAS_BOOTSTRAP_MODE !== 'exec') await warmUp(); // exec: the load is waiting
  send({ type: 'ready', runtime: 'node', version: process.versions.node, protocol: 'http1', pid: process.pid });
  control = new net.Socket({ fd: controlFd, readable: true, writable: false });
  let buf = '';
  let loading = false;
  control.setEncoding('utf8');
  control.on('data', (data) => {
    buf += data;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let msg;
      try {
        msg = JSON.parse(line);
      } catch (e) {
        msg = { type: 'load', malformed: e }; // answered load_failed below
      }
      if (msg === null || typeof msg !== 'object' || msg.type !== 'load') continue; // for newer runtimes: ignored
      if (loading) {
        send({ type: 'load_failed', error: 'this bootstrap has loaded a function already' });
        continue;
      }
      loading = true;
      const t0 = process.hrtime.bigint();
      Promise.resolve().then(() => {
        if (msg.malformed) throw new Error(`malformed load message: ${msg.malformed.message}`);
        return load(msg);
      }).then((f) => {
        fn = f;
        send({ type: 'loaded', ms: Number(process.hrtime.bigint() - t0) / 1e6 });
      }, (e) => {
        send({ type: 'load_failed', error: oneLine(errorName(e), 2048), detail: String(e && e.stack).slice(-16000) });
        process.exit(1);
      });
    }
  });
  control.on('end', stop); // the agent is gone
  control.on('error', stop);
});
server.on('error', (e) => {
  process.stderr.write(`bootstrap: ${e.message}\n`);
  process.exit(1);
});
