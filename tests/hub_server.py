"""A loopback fake of the Hugging Face Hub HTTP API, for tests of the real `huggingface_hub` client.

Run the unmodified client against it with ``HF_ENDPOINT=hub.url`` and ``HF_HUB_DISABLE_XET=1`` (both are read
when huggingface_hub is imported; or pass ``endpoint=hub.url`` to ``HfApi``/``hf_hub_download``). Stdlib only.

Model repos only, no auth checks (a token is only needed for whoami). Each commit is an immutable snapshot {path:
entry}; each branch (``main`` first, more with create_branch) points to its latest commit; a revision is "main" or a
commit sha (or a unique prefix of one). A new repo gets an initial commit holding ``.gitattributes``, like the real Hub.
Files matching its ``filter=lfs`` patterns, files >= 10 MiB and binary files (a NUL byte in the first 512 bytes) are
LFS: the client uploads them through the LFS batch API with a PUT back to this server, and the commit references them by
sha256. Blobs live in `root`/blobs (by sha256) and the repos in `root`/state.json, so a new LoopbackHub on the same root
serves the same repos.

Endpoints (what the client calls them for):
    GET  /api/whoami-v2                                   whoami
    GET  /api/agent-harnesses                             client telemetry, fetched once a day (empty registry)
    POST /api/validate-yaml                               create_commit when README.md is added (push_to_hub)
    POST /api/repos/create                                create_repo, push_to_hub (409 + "url" when it exists)
    DELETE /api/repos/delete                              delete_repo
    GET  /api/models/{ns}/{name}[/revision/{rev}]         repo_info / model_info / snapshot_download / resolve_revision
    POST /api/models/{ns}/{name}/preupload/{rev}          create_commit / upload_*: upload mode + remote oid per file
    POST /api/models/{ns}/{name}/commit/{rev}             create_commit (NDJSON: header, file, lfsFile, deleted*)
    GET  /api/models/{ns}/{name}/tree/{rev}[/{path}]      list_repo_tree / list_repo_files / snapshot_download
    POST /api/models/{ns}/{name}/paths-info/{rev}         get_paths_info (form-encoded), HfFileSystem, copies
    GET  /api/models/{ns}/{name}/refs, .../commits/{rev}  list_repo_refs, list_repo_commits
    POST /{ns}/{name}.git/info/lfs/objects/batch          LFS upload negotiation -> PUT /lfs-upload/{oid}
    POST /{ns}/{name}.git/info/lfs/objects/verify         LFS verify step after the PUT
    HEAD/GET /{ns}/{name}/resolve/{rev}/{path}            hf_hub_download / from_pretrained (Range supported)
Anything else answers 404 and is logged to stderr.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import tempfile
import threading
from datetime import datetime, timezone
from http.server import ThreadingHTTPServer
from pathlib import Path

from hub_http import USER, Handler, HubError

LFS_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack "
        "*.npy *.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors "
        "saved_model/**/* *.tar.* *.tar *.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents*"
    ).split()
)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class LoopbackHub:
    """In-memory (plus blobs on disk under `root`) Hub, served on 127.0.0.1 from a daemon thread."""

    def __init__(self, port: int = 0, root: Path | None = None):
        self._tmp = None if root is not None else tempfile.TemporaryDirectory(prefix="loopback-hub-")
        self.root = Path(root if root is not None else self._tmp.name)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        state = self.root / "state.json"
        self._repos: dict[str, dict] = json.loads(state.read_text()) if state.exists() else {}
        self._lock = threading.RLock()
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status), for assertions
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._server.hub = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LoopbackHub:
        serve = lambda: self._server.serve_forever(poll_interval=0.05)  # noqa: E731  (fast shutdown)
        self._thread = threading.Thread(target=serve, name="loopback-hub", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        if self._tmp is not None:
            self._tmp.cleanup()

    def client_env(self) -> dict[str, str]:
        """The environment variables that point a freshly imported huggingface_hub at this server."""
        return {"HF_ENDPOINT": self.url, "HF_HUB_DISABLE_XET": "1"}

    def commits(self, repo_id: str) -> list[str]:
        """Commit shas of `repo_id`, oldest first (the first one is the initial `.gitattributes` commit)."""
        with self._lock:
            return [commit["oid"] for commit in self._repo(repo_id)["commits"]]

    # ---- storage -------------------------------------------------------------------------------------------
    def _save(self) -> None:
        (self.root / "state.json").write_text(json.dumps(self._repos))

    def _put_blob(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.root / "blobs" / sha256
        if not path.exists():
            path.write_bytes(data)
        return sha256

    def _repo(self, repo_id: str) -> dict:
        if repo_id not in self._repos:
            raise HubError(404, "RepoNotFound", f"Repository {repo_id} not found")
        return self._repos[repo_id]

    def _resolve(self, repo_id: str, rev: str | None) -> tuple[dict, dict]:
        repo = self._repo(repo_id)
        rev = (rev or "main").removeprefix("refs/heads/")
        if rev in repo["refs"]:
            rev = repo["refs"][rev]
        found = [c for c in repo["commits"] if re.fullmatch(r"[0-9a-f]{7,40}", rev) and c["oid"].startswith(rev)]
        if len(found) != 1:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return repo, found[0]

    def _entry(self, data: bytes, lfs: bool) -> dict:
        sha256 = self._put_blob(data)
        return {
            "sha256": sha256,
            "size": len(data),
            "lfs": lfs,
            "oid": _git_oid(_lfs_pointer(sha256, len(data)) if lfs else data),
        }

    def _commit(
        self, repo: dict, parent: dict | None, tree: dict, summary: str, description: str = "", branch: str = "main"
    ) -> dict:
        date = _now()
        seed = json.dumps([parent and parent["oid"], summary, sorted((p, e["oid"]) for p, e in tree.items()), date])
        commit = {
            "oid": hashlib.sha1(seed.encode()).hexdigest(),
            "parent": parent and parent["oid"],
            "date": date,
            "title": summary,
            "message": description,
            "tree": tree,
        }
        repo["commits"].append(commit)
        repo["refs"][branch] = commit["oid"]
        self._save()
        return commit

    def _is_lfs(self, tree: dict, path: str, size: int, sample: bytes) -> bool:
        if size >= LFS_THRESHOLD or b"\0" in sample:
            return True
        attributes = tree.get(".gitattributes")
        text = (self.root / "blobs" / attributes["sha256"]).read_text() if attributes else ""
        for line in text.splitlines():
            pattern, *attrs = line.split() or [""]
            if "filter=lfs" in attrs and fnmatch.fnmatch(path if "/" in pattern else path.rsplit("/", 1)[-1], pattern):
                return True
        return False

    # ---- API ---------------------------------------------------------------------------------------------------
    def create_repo(self, body: dict) -> dict:
        name, org = body["name"], body.get("organization") or USER
        repo_id = name if "/" in name else f"{org}/{name}"
        url = f"{self.url}/{repo_id}"
        if body.get("type", "model") != "model":
            raise HubError(400, None, "Only model repos are supported by LoopbackHub")
        if repo_id in self._repos:
            raise HubError(409, None, "You already created this model repo", url=url)  # client reads "url"
        private = body.get("visibility") == "private" or bool(body.get("private"))
        repo = self._repos[repo_id] = {"private": private, "createdAt": _now(), "refs": {}, "commits": []}
        self._commit(repo, None, {".gitattributes": self._entry(GITATTRIBUTES.encode(), False)}, "initial commit")
        return {"url": url, "name": repo_id, "id": hashlib.md5(repo_id.encode()).hexdigest()[:24]}

    def delete_repo(self, body: dict) -> dict:
        name = body["name"]
        repo_id = name if "/" in name else f"{body.get('organization') or USER}/{name}"
        self._repo(repo_id)
        del self._repos[repo_id]
        self._save()
        return {}

    def model_info(self, repo_id: str, rev: str | None, blobs: bool) -> dict:
        repo, commit = self._resolve(repo_id, rev)
        siblings = []
        for path, entry in sorted(commit["tree"].items()):
            sibling = {"rfilename": path}
            if blobs:
                sibling.update(size=entry["size"], blobId=entry["oid"])
                if entry["lfs"]:
                    sibling["lfs"] = {
                        "size": entry["size"],
                        "sha256": entry["sha256"],
                        "pointerSize": len(_lfs_pointer(entry["sha256"], entry["size"])),
                    }
            siblings.append(sibling)
        return {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit["oid"],
            "lastModified": commit["date"],
            "createdAt": repo["createdAt"],
            "private": repo["private"],
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "spaces": [],
            "usedStorage": sum(e["size"] for e in commit["tree"].values()),
        }

    def preupload(self, repo_id: str, rev: str, body: dict) -> dict:
        _, commit = self._resolve(repo_id, rev)
        files = []
        for file in body["files"]:
            lfs = self._is_lfs(commit["tree"], file["path"], file["size"], base64.b64decode(file["sample"]))
            remote = commit["tree"].get(file["path"])
            oid = remote and (remote["sha256"] if remote["lfs"] else remote["oid"])
            files.append(
                {"path": file["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
        return {"files": files, "commitOid": commit["oid"]}

    def commit(self, repo_id: str, rev: str, lines: list[dict], params: dict) -> dict:
        if params.get("create_pr"):
            raise HubError(400, None, "LoopbackHub does not support pull requests")
        repo, head = self._resolve(repo_id, rev)
        if rev.removeprefix("refs/heads/") not in repo["refs"]:
            raise HubError(400, None, f"Can only commit to a branch, not to {rev!r}")
        tree, header = dict(head["tree"]), {}
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "header":
                header = value
                parent = value.get("parentCommit")
                if parent and not head["oid"].startswith(parent):
                    raise HubError(412, None, f"Parent commit {parent} is not the head of {rev} ({head['oid']})")
            elif key == "file":
                tree[value["path"]] = self._entry(base64.b64decode(value["content"]), False)
            elif key == "lfsFile":
                blob = self.root / "blobs" / value["oid"]
                if not blob.exists():
                    raise HubError(422, None, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                tree[value["path"]] = {
                    "sha256": value["oid"],
                    "size": blob.stat().st_size,
                    "lfs": True,
                    "oid": _git_oid(_lfs_pointer(value["oid"], blob.stat().st_size)),
                }
            elif key == "deletedFile":
                if tree.pop(value["path"], None) is None:
                    raise HubError(404, "EntryNotFound", f"A file with this name doesn't exist: {value['path']}")
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                tree = {p: e for p, e in tree.items() if not p.startswith(prefix)}
            else:
                raise HubError(400, None, f"Unknown commit operation {key!r}")
        new = self._commit(
            repo, head, tree, header.get("summary", ""), header.get("description", ""), rev.removeprefix("refs/heads/")
        )
        return {
            "success": True,
            "commitOid": new["oid"],
            "commitUrl": f"{self.url}/{repo_id}/commit/{new['oid']}",
            "hookOutput": "",
        }

    def create_branch(self, repo_id: str, branch: str, body: dict) -> dict:
        with self._lock:
            repo, start = self._resolve(repo_id, body.get("startingPoint"))
            if branch in repo["refs"]:
                raise HubError(409, None, f"Branch {branch} already exists")
            repo["refs"][branch] = start["oid"]
            self._save()
        return {}

    def refs(self, repo_id: str) -> dict:
        refs = self._repo(repo_id)["refs"].items()
        branches = [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid} for name, oid in refs]
        return {"branches": branches, "converts": [], "tags": [], "pullRequests": []}

    def history(self, repo_id: str, rev: str) -> list[dict]:
        repo, commit = self._resolve(repo_id, rev)
        by_oid, history = {c["oid"]: c for c in repo["commits"]}, []
        while commit:
            history.append(
                {
                    "id": commit["oid"],
                    "title": commit["title"],
                    "message": commit["message"],
                    "date": commit["date"],
                    "authors": [{"user": USER}],
                }
            )
            commit = by_oid.get(commit["parent"])
        return history

    def tree(self, repo_id: str, rev: str, base: str, recursive: bool) -> list[dict]:
        return self._path_infos(self._resolve(repo_id, rev)[1]["tree"], None, base, recursive)

    def paths_info(self, repo_id: str, rev: str, paths: list[str]) -> list[dict]:
        return self._path_infos(self._resolve(repo_id, rev)[1]["tree"], paths)

    def _path_infos(self, tree: dict, paths: list[str] | None, base: str = "", recursive: bool = True) -> list[dict]:
        """Tree entries: the given `paths`, or everything under `base` (directly under it unless `recursive`)."""
        folders: dict[str, list[str]] = {}
        for path, entry in tree.items():
            parts = path.split("/")
            for i in range(1, len(parts)):
                folders.setdefault("/".join(parts[:i]), []).append(entry["oid"])
        if paths is None:
            if base and base not in folders:
                raise HubError(404, "EntryNotFound", f"{base} does not exist")
            prefix = base + "/" if base else ""
            paths = [
                p
                for p in sorted(folders) + sorted(tree)
                if p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])
            ]
        out = []
        for path in paths:
            if path in tree:
                entry = tree[path]
                info = {"type": "file", "path": path, "size": entry["size"], "oid": entry["oid"]}
                if entry["lfs"]:
                    info["lfs"] = {
                        "oid": entry["sha256"],
                        "size": entry["size"],
                        "pointerSize": len(_lfs_pointer(entry["sha256"], entry["size"])),
                    }
                out.append(info)
            elif path in folders:
                oid = hashlib.sha1("".join(sorted(folders[path])).encode()).hexdigest()
                out.append({"type": "directory", "path": path, "size": 0, "oid": oid})
        return out

    def lfs_verify(self, repo_id: str, body: dict) -> dict:
        self._repo(repo_id)
        blob = self.root / "blobs" / body["oid"]
        if not blob.exists() or blob.stat().st_size != body["size"]:
            raise HubError(404, None, f"LFS object {body['oid']} is missing or has the wrong size")
        return {}

    def lfs_put(self, oid: str, data: bytes) -> tuple:
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, None, f"Uploaded content does not match the sha256 {oid}")
        self._put_blob(data)
        return (200, b"", {"ETag": f'"{oid}"'})

    def lfs_batch(self, repo_id: str, body: dict) -> dict:
        self._repo(repo_id)
        objects = []
        for obj in body["objects"]:
            item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not (self.root / "blobs" / obj["oid"]).exists():
                item["actions"] = {
                    "upload": {"href": f"{self.url}/lfs-upload/{obj['oid']}", "header": {}},
                    "verify": {"href": f"{self.url}/{repo_id}.git/info/lfs/objects/verify"},
                }
            objects.append(item)
        return {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def resolve_file(self, repo_id: str, rev: str, path: str, range_header: str, head: bool) -> tuple:
        """(status, body, headers) of GET/HEAD /{repo_id}/resolve/{rev}/{path}: the bytes, served directly."""
        _, commit = self._resolve(repo_id, rev)
        headers = {"X-Repo-Commit": commit["oid"]}
        entry = commit["tree"].get(path)
        if entry is None:
            raise HubError(404, "EntryNotFound", f"{path} does not exist on {rev}", headers)
        size = entry["size"]
        headers.update(
            {
                "Content-Type": "application/octet-stream",
                "Accept-Ranges": "bytes",
                "ETag": f'"{entry["sha256"] if entry["lfs"] else entry["oid"]}"',
            }
        )
        if entry["lfs"]:
            headers.update({"X-Linked-Etag": f'"{entry["sha256"]}"', "X-Linked-Size": size})
        start, end, status = 0, size - 1, 200
        if match := re.fullmatch(r"bytes=(\d+)-(\d*)", range_header):
            start, end, status = int(match[1]), min(int(match[2] or size - 1), size - 1), 206
            if start >= size:
                raise HubError(
                    416, None, f"Range not satisfiable for a file of {size} bytes", {"Content-Range": f"bytes */{size}"}
                )
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        if head:
            return (status, b"", {**headers, "Content-Length": end - start + 1})
        with open(self.root / "blobs" / entry["sha256"], "rb") as f:
            f.seek(start)
            return (status, f.read(end - start + 1), headers)
