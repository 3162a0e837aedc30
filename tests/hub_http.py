"""The HTTP side of the loopback Hub (`hub_server.LoopbackHub`): request parsing, routing of the Hub's API paths to
the hub's endpoint methods, and errors sent as the Hub sends them (JSON body, X-Error-Code / X-Error-Message)."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from hub_server import LoopbackHub

USER = "test-user"


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers or {}, extra


class Handler(BaseHTTPRequestHandler):
    """Parses a request, routes it to the `LoopbackHub` endpoint method (`self.server.hub`) and sends the result."""

    protocol_version = "HTTP/1.0"  # one request per connection: no keep-alive bookkeeping needed

    def log_message(self, format, *args):  # silence the default per-request log
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, method: str = "GET") -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, str(value))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)
        self.server.hub.requests.append((method, self.path, status))

    def _dispatch(self) -> None:
        hub: LoopbackHub = self.server.hub
        method = self.command
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        body = self._read_body()
        try:
            with hub._lock:
                result = self._route(hub, method, parts, query, body)
        except HubError as e:
            headers = {"X-Error-Message": e.message, **({"X-Error-Code": e.code} if e.code else {}), **e.headers}
            return self._send(e.status, json.dumps({"error": e.message, **e.extra}).encode(), headers, method)
        if result is None:
            print(f"LoopbackHub: unknown route {method} {self.path}", file=sys.stderr, flush=True)
            return self._send(404, json.dumps({"error": f"Unknown route {method} {url.path}"}).encode(), None, method)
        if isinstance(result, tuple):  # a file: (status, body, headers)
            return self._send(*result, method=method)
        self._send(200, json.dumps(result).encode(), None, method)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def _route(self, hub: LoopbackHub, method: str, parts: list[str], query: dict, body: bytes):
        if method == "GET" and parts == ["api", "whoami-v2"]:
            if not self.headers.get("Authorization"):
                raise HubError(401, None, "Invalid credentials in Authorization header")
            return {
                "type": "user",
                "id": "0" * 24,
                "name": USER,
                "fullname": "Test User",
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
            }
        if method == "GET" and parts == ["api", "agent-harnesses"]:  # client telemetry, fetched once a day
            return {"standardEnvVars": [], "harnesses": {}}
        if method == "POST" and parts == ["api", "validate-yaml"]:
            return {"errors": [], "warnings": []}
        if parts[:2] == ["api", "repos"] and (method, *parts[2:]) in (("POST", "create"), ("DELETE", "delete")):
            return (hub.create_repo if parts[2] == "create" else hub.delete_repo)(json.loads(body))
        if len(parts) >= 5 and parts[:2] == ["api", "models"]:  # /api/models/{ns}/{name}/{action}/{rev}/...
            repo_id, action, rev, rest = f"{parts[2]}/{parts[3]}", parts[4], (parts[5:6] or [None])[0], parts[6:]
            if (method, action) == ("GET", "revision"):
                return hub.model_info(repo_id, rev, "blobs" in query)
            if (method, action) == ("POST", "preupload"):
                return hub.preupload(repo_id, rev, json.loads(body))
            if (method, action) == ("POST", "commit"):
                return hub.commit(repo_id, rev, [json.loads(line) for line in body.splitlines() if line.strip()], query)
            if (method, action) == ("GET", "tree"):
                return hub.tree(repo_id, rev, "/".join(rest), query.get("recursive", "").lower() in ("true", "1"))
            if (method, action) == ("POST", "paths-info"):
                return hub.paths_info(repo_id, rev, parse_qs(body.decode()).get("paths", []))
            if (method, action) == ("POST", "branch"):
                return hub.create_branch(repo_id, rev, json.loads(body or b"{}"))
            if (method, action) == ("GET", "refs"):
                return hub.refs(repo_id)
            if (method, action) == ("GET", "commits"):
                return hub.history(repo_id, rev)
        if method == "GET" and len(parts) == 4 and parts[:2] == ["api", "models"]:
            return hub.model_info(repo_id=f"{parts[2]}/{parts[3]}", rev=None, blobs="blobs" in query)
        lfs_route = len(parts) == 6 and parts[1].endswith(".git") and parts[2:5] == ["info", "lfs", "objects"]
        if method == "POST" and lfs_route:
            repo_id = f"{parts[0]}/{parts[1].removesuffix('.git')}"  # /{ns}/{name}.git/info/lfs/objects/{batch,verify}
            if parts[5] in ("batch", "verify"):
                return (hub.lfs_batch if parts[5] == "batch" else hub.lfs_verify)(repo_id, json.loads(body))
        if method == "PUT" and len(parts) == 2 and parts[0] == "lfs-upload":
            return hub.lfs_put(parts[1], body)
        if method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
            range_header, head = self.headers.get("Range", ""), method == "HEAD"
            return hub.resolve_file(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), range_header, head)
        return None
