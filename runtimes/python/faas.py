"""faas is the SDK of faasplane's Python runtime.

A function is a module with a handler, ``handler(request)`` by default (the
manifest's ``"command": "app.py:name"`` names another), and optionally an
``init()`` that the runtime calls once per instance, when the agent calls the
init hook. The handler gets a :class:`Request` and returns one of:

* ``str`` or ``bytes`` — a 200 answer (text/plain; charset=utf-8, or
  application/octet-stream);
* a ``dict`` or ``list`` — a 200 JSON answer;
* ``None`` — 204 No Content;
* a :class:`Response` — any status, headers and body;
* an iterable (a generator, say) of ``str``/``bytes`` — a streamed 200
  answer (chunked: every chunk is sent as soon as it is produced); a
  :class:`Response` may carry one as its body too.

An ``async def`` handler or init is run to completion with ``asyncio.run``.
Raising :class:`HTTPError` answers with its status; any other exception
answers 500. Both carry faasplane's error headers (X-Faas-Error-Code,
X-Faas-Error-Message, X-Faas-Request-Id). :func:`log` and
:meth:`Request.log` write structured JSON lines that the agent turns into
log records carrying the request's ID. This module needs the standard
library only (Python 3.9 or later).
"""

import json
import sys
import threading
import time
from urllib.parse import parse_qsl

__all__ = ["Request", "Response", "HTTPError", "log"]

_log_lock = threading.Lock()


class Request:
    """An invocation: method, path, query, headers and the whole body."""

    __slots__ = ("method", "path", "query_string", "headers", "body", "request_id", "function_id", "_query")

    def __init__(self, method, path, query_string, headers, body, request_id, function_id):
        #: The HTTP method ("GET", "POST", ...).
        self.method = method
        #: The path, without the query ("/greet").
        self.path = path
        #: The raw query string, without "?" ("name=faas").
        self.query_string = query_string
        #: The request headers: a case-insensitive mapping (``get``, ``get_all``).
        self.headers = headers
        #: The request body as bytes (b"" when there is none).
        self.body = body
        #: The request's X-Faas-Request-Id ("" when absent).
        self.request_id = request_id
        #: The function's ID (X-Faas-Function-Id).
        self.function_id = function_id
        self._query = None

    @property
    def query(self):
        """The query's parameters: name to first value."""
        if self._query is None:
            q = {}
            for k, v in parse_qsl(self.query_string, keep_blank_values=True):
                q.setdefault(k, v)
            self._query = q
        return self._query

    def text(self, encoding="utf-8"):
        """The body decoded as text."""
        return self.body.decode(encoding)

    def json(self):
        """The body parsed as JSON."""
        return json.loads(self.body)

    def log(self, msg, level="info", **attrs):
        """Write a structured log record that carries this request's ID."""
        log(msg, level=level, request_id=self.request_id, **attrs)


class Response:
    """A full answer: body, status and headers.

    ``body`` is ``bytes``, ``str`` (encoded as UTF-8), ``None`` (empty) or an
    iterable of ``bytes``/``str`` chunks, which is streamed.
    """

    __slots__ = ("body", "status", "headers")

    def __init__(self, body=b"", status=200, headers=None, content_type=None):
        self.body = body
        self.status = int(status)
        self.headers = dict(headers or {})
        if content_type is not None:
            self.headers["Content-Type"] = content_type


class HTTPError(Exception):
    """An error answer: raise it from a handler or init.

    The answer has status ``status``, the X-Faas-Error-* headers (code
    ``code``, by default "bad_request" for a 4xx status and "internal"
    otherwise) and the message as its body.
    """

    def __init__(self, status, message, code=None):
        super().__init__(message)
        self.status = int(status)
        self.message = str(message)
        self.code = code or ("bad_request" if 400 <= self.status < 500 else "internal")


def log(msg, level="info", request_id="", **attrs):
    """Write one structured log record to stderr as a JSON line.

    The agent parses it: ``msg`` becomes the record's message, ``level`` its
    level (debug, info, warn, error), ``request_id`` ties it to an
    invocation, and the other keyword arguments become its attributes.
    """
    rec = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": str(level).upper(), "msg": str(msg)}
    if request_id:
        rec["request_id"] = request_id
    for k, v in attrs.items():
        rec[k] = v
    line = json.dumps(rec, default=str, ensure_ascii=False) + "\n"
    with _log_lock:
        sys.stderr.write(line)
        sys.stderr.flush()
