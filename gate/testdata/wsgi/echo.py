"""A WSGI app for gate/wsgi_test.go: it answers with what it received.

Standard library only, so that gunicorn and uWSGI (Debian: gunicorn,
uwsgi, uwsgi-plugin-python3) load it with no virtualenv. The report goes
in the X-Echo response header, hex-encoded JSON, so that it survives HEAD
requests and any byte in a path: SCRIPT_NAME and PATH_INFO are WSGI
"bytes as latin-1" strings, sent as the hex of those bytes. The body, if
any, is never read: the test sends none, and a body announced by a
smuggled Content-Length must not make the app wait for it.
"""

import json


def app(environ, start_response):
    def wsgi_hex(key):
        value = environ.get(key)
        if value is None:
            return None
        return value.encode("latin-1").hex()

    def text(value):
        # WSGI strings are latin-1 decoded bytes: back to bytes, then
        # shown as UTF-8 where they are, with escapes where not.
        return value.encode("latin-1").decode("utf-8", "backslashreplace")

    report = {
        "echo": True,
        "script_name_hex": wsgi_hex("SCRIPT_NAME"),
        "path_info_hex": wsgi_hex("PATH_INFO"),
        "request_method": environ.get("REQUEST_METHOD"),
        "request_uri": text(environ["REQUEST_URI"]) if "REQUEST_URI" in environ else None,
        "raw_uri": text(environ["RAW_URI"]) if "RAW_URI" in environ else None,
        "query_string": text(environ.get("QUERY_STRING", "")),
        "content_type": environ.get("CONTENT_TYPE"),
        "content_length": environ.get("CONTENT_LENGTH"),
        "url_scheme": environ.get("wsgi.url_scheme"),
        "http": {k: text(v) for k, v in environ.items() if k.startswith("HTTP_") and isinstance(v, str)},
    }
    header = json.dumps(report, sort_keys=True).encode("utf-8").hex()
    # No body: uWSGI would send one even to HEAD.
    start_response("200 OK", [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", "0"),
        ("X-Echo", header),
    ])
    return []
