"""bootstrap is faasplane's Python runtime: the process a warm pod of runtime
"python" runs before any function is known, which then hot-loads one.

It speaks the runtime protocol of RUNTIMES.md. Started by the agent with
PORT, FAAS_CONTROL_FD, FAAS_EVENT_FD and FAAS_LISTEN_FD in its environment,
it imports what serving needs, adopts the listening socket (or binds
127.0.0.1:$PORT without one) and reports {"type": "ready"} on the event
pipe. It then reads one load message from the control pipe: it applies
the function's environment, changes into its code directory, imports the
entry ("app.py" or "app.py:handler"; a dotted module name works too), and
reports "loaded" (or "load_failed" with the error and its traceback), and
serves invocations over HTTP/1.1 with a thread per connection until SIGTERM,
when it stops accepting, lets the requests in flight finish and exits 0. The
end of the control pipe (the agent is gone) stops it the same way.

Standard library only; Python 3.9 or later.
"""

# Imports are what an exec'd bootstrap pays on the cold-start path: asyncio
# (40 ms) and traceback are imported when first needed.
import importlib
import importlib.util
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import faas

MAX_BODY = int(os.environ.get("FAAS_MAX_BODY_BYTES", str(64 << 20)))
INIT_PATH_DEFAULT = "/_faas/init"


def one_line(s, limit=512):
    """s as one line of printable text, at most limit bytes (header-safe)."""
    s = "".join(c if c >= " " and c != "\x7f" else " " for c in str(s))
    b = s.encode("utf-8")
    if len(b) <= limit:
        return s
    return b[:limit].decode("utf-8", "ignore")


class Events:
    """The event pipe to the agent: one JSON object per line."""

    def __init__(self, fd):
        self.fd = fd
        self.lock = threading.Lock()

    def send(self, **msg):
        data = (json.dumps(msg, ensure_ascii=True) + "\n").encode()
        with self.lock:
            while data:
                n = os.write(self.fd, data)
                data = data[n:]


class Function:
    """The loaded function: its handler, its init and the init hook's state."""

    def __init__(self, handler, init, init_path, function_id):
        self.handler = handler
        self.init = init
        # No init path: the function has no init hook ("no_init"), and the
        # agent never calls one, so nothing waits for it.
        self.init_path = init_path
        self.function_id = function_id
        self.ready = init is None or not init_path
        self.attempts = 0
        self.init_lock = threading.Lock()


def load(msg):
    """Import the function that the load message names."""
    env = msg.get("env") or {}
    for k, v in env.items():
        os.environ[k] = v
    code_dir = msg["code_dir"]
    os.chdir(code_dir)
    sys.path.insert(0, code_dir)
    entry = msg.get("entry") or "main.py"
    name = "handler"
    if ":" in entry:
        entry, name = entry.rsplit(":", 1)
    sys.argv = [entry] + list(msg.get("args") or [])
    if entry.endswith(".py"):
        path = os.path.join(code_dir, entry)
        if not os.path.isfile(path):
            raise FileNotFoundError("entry %s is not a file of the package" % entry)
        modname = os.path.splitext(entry)[0].replace("/", ".")
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
    else:
        mod = importlib.import_module(entry)
    handler = getattr(mod, name, None)
    if not callable(handler):
        raise AttributeError("%s has no callable %r" % (entry, name))
    init = getattr(mod, "init", None)
    if init is not None and not callable(init):
        raise AttributeError("%s: init is not callable" % entry)
    return Function(handler, init, msg.get("init_path"), msg.get("function_id", ""))


def call(f, *args):
    """Call f, running a coroutine it returns to completion."""
    r = f(*args)
    if hasattr(r, "__await__"):
        import asyncio

        r = asyncio.run(_await(r))
    return r


def format_exc():
    import traceback

    return traceback.format_exc()


async def _await(r):
    return await r


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faasplane-python"
    sys_version = ""
    # Without TCP_NODELAY, a body written after its headers waits for the
    # caller's delayed ACK: 40 ms per answer.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # no access log: the agent counts
        pass

    def handle_one_request(self):
        # The standard loop, with every method going to serve().
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            srv = self.server
            srv.enter()
            try:
                self.serve()
            finally:
                srv.leave()
            self.wfile.flush()
        except (TimeoutError, ConnectionError, BrokenPipeError):
            self.close_connection = True

    # Reading the request.

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            parts, total = [], 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                total += size
                if total > MAX_BODY:
                    raise faas.HTTPError(413, "request body larger than %d bytes" % MAX_BODY, "too_large")
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise faas.HTTPError(413, "request body larger than %d bytes" % MAX_BODY, "too_large")
        return self.rfile.read(n) if n > 0 else b""

    # Writing the answer.

    def write_head(self, status, headers, length, body=b""):
        lines = ["HTTP/1.1 %d %s\r\n" % (status, self.responses.get(status, ("",))[0])]
        for k, v in headers.items():
            lines.append("%s: %s\r\n" % (k, one_line(v, 8192)))
        if length is None:
            lines.append("Transfer-Encoding: chunked\r\n")
        elif status not in (204, 304) and not 100 <= status < 200:
            lines.append("Content-Length: %d\r\n" % length)
        if self.close_connection:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        # One write for the head and a small body: one packet.
        self.wfile.write("".join(lines).encode("latin-1", "replace") + body)

    def write_error(self, status, code, message, rid):
        msg = one_line(message)
        body = ("%s: %s\n" % (code, msg)).encode()
        self.write_head(status, {
            "Content-Type": "text/plain; charset=utf-8",
            "X-Faas-Error-Code": code,
            "X-Faas-Error-Message": msg,
            "X-Faas-Request-Id": one_line(rid, 128),
        }, len(body), body if self.command != "HEAD" else b"")

    def write_result(self, result):
        status, headers, body = 200, {}, result
        if isinstance(result, faas.Response):
            status, headers, body = result.status, dict(result.headers), result.body
        elif result is None:
            status, body = 204, b""
        elif isinstance(result, (dict, list)):
            headers["Content-Type"] = "application/json"
            body = json.dumps(result).encode()
        keys = {k.lower() for k in headers}
        if isinstance(body, str):
            body = body.encode()
            if "content-type" not in keys:
                headers["Content-Type"] = "text/plain; charset=utf-8"
        if body is None:
            body = b""
        if isinstance(body, (bytes, bytearray, memoryview)):
            if "content-type" not in {k.lower() for k in headers} and len(body) > 0:
                headers["Content-Type"] = "application/octet-stream"
            for k in list(headers):
                if k.lower() in ("content-length", "transfer-encoding", "connection", "x-faas-error-source"):
                    del headers[k]
            send = self.command != "HEAD" and status not in (204, 304)
            if send and len(body) > 65536:
                self.write_head(status, headers, len(body))
                self.wfile.write(body)
            else:
                self.write_head(status, headers, len(body), bytes(body) if send else b"")
            return
        self.stream(status, headers, body)

    def stream(self, status, headers, chunks):
        for k in list(headers):
            if k.lower() in ("content-length", "transfer-encoding", "connection", "x-faas-error-source"):
                del headers[k]
        if "content-type" not in {k.lower() for k in headers}:
            headers["Content-Type"] = "application/octet-stream"
        it = iter(chunks)
        self.write_head(status, headers, None)
        self.wfile.flush()
        try:
            for chunk in it:
                if isinstance(chunk, str):
                    chunk = chunk.encode()
                if not chunk:
                    continue
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
        except Exception as e:  # too late for a status: break the body off
            faas.log("handler failed while streaming", level="error", request_id=self.rid,
                     error=one_line("%s: %s" % (type(e).__name__, e)), traceback=format_exc())
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        self.wfile.write(b"0\r\n\r\n")

    # Serving.

    def serve(self):
        fn = self.server.fn
        self.rid = self.headers.get("X-Faas-Request-Id", "")
        path, _, query = self.path.partition("?")
        if fn is None:
            self.close_connection = True
            self.write_error(503, "not_ready", "no function is loaded", self.rid)
            return
        if fn.init_path and path == fn.init_path:
            self.serve_init(fn)
            return
        if not fn.ready:
            self.write_error(503, "not_ready", "function not initialized", self.rid)
            return
        try:
            body = self.read_body()
            req = faas.Request(self.command, path, query, self.headers, body, self.rid,
                               self.headers.get("X-Faas-Function-Id", fn.function_id))
            result = call(fn.handler, req)
        except faas.HTTPError as e:
            self.write_error(e.status, e.code, e.message, self.rid)
            return
        except Exception as e:
            faas.log("handler failed", level="error", request_id=self.rid,
                     error=one_line("%s: %s" % (type(e).__name__, e)), traceback=format_exc())
            self.write_error(500, "internal", "%s: %s" % (type(e).__name__, e), self.rid)
            return
        try:
            self.write_result(result)
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception as e:
            faas.log("bad handler result", level="error", request_id=self.rid, error=one_line(e))
            self.write_error(500, "internal", "bad handler result: %s" % e, self.rid)

    def serve_init(self, fn):
        if self.command != "POST":
            self.write_error(405, "method_not_allowed", "the init hook takes POST", self.rid)
            return
        self.read_body()
        with fn.init_lock:
            if fn.ready:
                body = b"already initialized\n"
                self.write_head(200, {"Content-Type": "text/plain", "X-Faas-Init-Attempts": str(fn.attempts)}, len(body), body)
                return
            fn.attempts += 1
            try:
                if fn.init is not None:
                    call(fn.init)
            except Exception as e:
                msg = one_line("%s: %s" % (type(e).__name__, e) if not isinstance(e, faas.HTTPError) else e.message)
                faas.log("init failed", level="error", attempt=fn.attempts, error=msg, traceback=format_exc())
                body = (msg + "\n").encode()
                self.write_head(500, {"Content-Type": "text/plain; charset=utf-8",
                                      "X-Faas-Init-Attempts": str(fn.attempts)}, len(body), body)
                return
            fn.ready = True
        body = b"initialized\n"
        self.write_head(200, {"Content-Type": "text/plain", "X-Faas-Init-Attempts": str(fn.attempts)}, len(body), body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, addr, listen_fd=None):
        if listen_fd is None:
            super().__init__(addr, Handler)
        else:
            # The agent's socket, bound and listening: adopt it.
            super().__init__(addr, Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = socket.socket(fileno=listen_fd)
            self.server_address = self.socket.getsockname()
        self.fn = None
        self.busy = 0
        self.cond = threading.Condition()

    def enter(self):
        with self.cond:
            self.busy += 1

    def leave(self):
        with self.cond:
            self.busy -= 1
            self.cond.notify_all()

    def drain(self):
        with self.cond:
            while self.busy > 0:
                self.cond.wait()


class Stop(Exception):
    """Raised by the SIGTERM handler to end the wait on the control pipe."""


def warm_up(server):
    """Send a few requests through the whole serving path with a stand-in
    function before saying ready, so that the first real requests do not pay
    for the first run of this code (lazy imports, caches) on the cold-start
    path. The stand-in runs no function code; fn is None again afterwards."""
    server.fn = Function(lambda req: req.body or req.query.get("up", "ok"), lambda: None, INIT_PATH_DEFAULT, "")
    try:
        import http.client

        c = http.client.HTTPConnection(server.server_address[0], server.server_address[1], timeout=5)
        for _ in range(2):
            for method, path, body in (("POST", INIT_PATH_DEFAULT, b""), ("GET", "/warm?up=1", None), ("POST", "/warm", b"up")):
                c.request(method, path, body=body)
                c.getresponse().read()
        c.close()
    except Exception:
        pass
    finally:
        server.fn = None


def main():
    # A thread per connection: 1 MiB stacks rather than 8, so that a process
    # limit on data (which counts thread stacks) leaves room for them.
    threading.stack_size(int(os.environ.get("FAAS_THREAD_STACK_BYTES", str(1 << 20))))
    port = int(os.environ["PORT"])
    events = Events(int(os.environ.get("FAAS_EVENT_FD", "4")))
    control = os.fdopen(int(os.environ.get("FAAS_CONTROL_FD", "3")), "rb")
    listen_fd = os.environ.get("FAAS_LISTEN_FD")
    server = Server(("127.0.0.1", port), int(listen_fd) if listen_fd else None)
    # SIGTERM must reach this thread, blocked reading the control pipe: a
    # signal that the kernel gives another thread would not interrupt the
    # read, and Python runs handlers in the main thread only. The serving
    # threads (and those they start) inherit the blocked mask.
    stops = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.25}, daemon=True).start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)

    def stop(*_):
        if server.fn is None:
            os._exit(0)  # nothing loaded: nothing to finish
        raise Stop()

    if os.environ.get("FAAS_BOOTSTRAP_MODE") != "exec":  # exec: the load is waiting
        warm_up(server)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    events.send(type="ready", runtime="python", version=sys.version.split()[0], protocol="http1", pid=os.getpid())

    msg = None
    while msg is None:
        line = control.readline()
        if not line:
            return 0  # the agent is gone
        try:
            m = json.loads(line)
        except ValueError:
            m = {"type": "load", "malformed": line}  # answered load_failed below
        if isinstance(m, dict) and m.get("type") == "load":
            msg = m  # other message types are for newer runtimes: ignored
    t0 = time.perf_counter()
    try:
        if "malformed" in msg:
            raise ValueError("malformed load message %r" % msg["malformed"][:200])
        fn = load(msg)
    except Stop:
        raise
    except BaseException as e:
        events.send(type="load_failed", error=one_line("%s: %s" % (type(e).__name__, e), 2048),
                    detail=format_exc()[-16000:])
        return 1
    try:
        # A SIGTERM from here on stops gracefully, wherever it finds this
        # thread (the handler runs when the thread next holds the GIL).
        server.fn = fn
        events.send(type="loaded", ms=round((time.perf_counter() - t0) * 1000, 3))
        for line in control:
            try:
                again = json.loads(line).get("type") == "load"
            except (ValueError, AttributeError):
                again = True
            if again:
                events.send(type="load_failed", error="this bootstrap has loaded a function already")
        # The end of the control pipe: the agent is gone.
    except Stop:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server.shutdown()  # stop accepting; serve_forever runs in its thread
    server.server_close()
    server.drain()  # the requests in flight finish
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
