// faas is the SDK of faasplane's Node.js runtime: require('faas') in a
// function's code. A function is a module that exports a handler,
// `handler(req)` by default (the manifest's "command": "index.js:name" names
// another), and optionally `init()`, which the runtime calls once per
// instance when the agent calls the init hook. Both may be async.
//
// The handler gets a request object — method, path, query (a
// URLSearchParams), headers (lower-case names), body (a Buffer), text(),
// json(), requestId, functionId and log(msg, attrs) — and returns one of:
//
//   - a string, Buffer or Uint8Array: a 200 answer (text/plain; charset=utf-8,
//     or application/octet-stream);
//   - a plain object or array: a 200 JSON answer;
//   - null or undefined: 204 No Content;
//   - a Response (the global of the fetch API): any status, headers and
//     body, streamed when the body is a stream;
//   - an async iterable (an async generator, say) of strings or buffers: a
//     streamed 200 answer, every chunk sent as it is produced.
//
// Throwing an HTTPError answers with its status; anything else thrown
// answers 500. Both carry faasplane's error headers (X-Faas-Error-Code,
// X-Faas-Error-Message, X-Faas-Request-Id). log() writes structured JSON
// lines that the agent turns into log records carrying the request's ID.
// Built-in modules only (Node.js 18 or later).
'use strict';

// HTTPError is an error answer: status, the X-Faas-Error-* headers (code,
// by default "bad_request" for a 4xx status and "internal" otherwise) and
// the message as the body.
class HTTPError extends Error {
  constructor(status, message, code) {
    super(message);
    this.name = 'HTTPError';
    this.status = status | 0;
    this.code = code || (this.status >= 400 && this.status < 500 ? 'bad_request' : 'internal');
  }
}

// log writes one structured log record to stderr as a JSON line: msg
// becomes the record's message, attrs.level its level (debug, info, warn,
// error), attrs.request_id ties it to an invocation, and the other
// attributes are kept.
function log(msg, attrs) {
  const rec = { time: new Date().toISOString(), level: 'INFO', msg: String(msg) };
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'level') rec.level = String(v).toUpperCase();
      else if (v !== undefined && v !== '') rec[k] = v;
    }
  }
  process.stderr.write(JSON.stringify(rec) + '\n');
}

module.exports = { HTTPError, log };
