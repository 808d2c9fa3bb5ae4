// hello-node is the Node.js hello: it echoes the request body, or greets
// ?name= (default "world") when there is none, like the Go hello. It runs
// on faasplane's Node.js runtime (runtimes/node): the manifest's command
// names the file and its export, and a warm pod of runtime "node"
// hot-loads it.
'use strict';

exports.handler = (req) => {
  if (req.body.length > 0) {
    return new Response(req.body, { headers: { 'Content-Type': 'text/plain; charset=utf-8' } });
  }
  return `hello, ${req.query.get('name') || 'world'}\n`;
};
