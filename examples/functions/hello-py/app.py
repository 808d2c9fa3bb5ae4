"""hello-py is the Python hello: it echoes the request body, or greets
?name= (default "world") when there is none, like the Go hello. It runs on
faasplane's Python runtime (runtimes/python): the manifest's command names
the module and its handler, and a warm pod of runtime "python" hot-loads it.
"""

import faas


def handler(request: faas.Request):
    if request.body:
        return faas.Response(request.body, headers={"Content-Type": "text/plain; charset=utf-8"})
    name = request.query.get("name") or "world"
    return "hello, %s\n" % name
