"""A local server speaking the Hugging Face Hub endpoints that ``huggingface_hub`` uses to
create a dataset repo, read its current revision and commit files (regular uploads).

Repos live in memory: ``{repo_id: {"sha": commit, "files": {path: bytes}, "private": bool}}``.
Files are stored as the Hub stores regular files and reported with their git blob id.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


class HubState:
    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}
        self.commits: list[dict] = []
        self.tokens: list[str | None] = []
        self.validated: list[dict] = []  # README front matters that passed /api/validate-yaml


def _blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    state: HubState

    def log_message(self, *args) -> None:
        pass

    def _reply(self, code: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _repo(self, parts: list[str]) -> tuple[str, list[str]]:
        return f"{parts[0]}/{parts[1]}", parts[2:]

    def do_GET(self) -> None:  # noqa: N802
        self.state.tokens.append(self.headers.get("authorization"))
        parts = urlparse(self.path).path.strip("/").split("/")
        if parts[:2] == ["api", "datasets"]:
            repo_id, rest = self._repo(parts[2:])
            repo = self.state.repos.get(repo_id)
            if repo is None:
                return self._reply(404, {"error": "Repository not found"})
            siblings = [{"rfilename": p, "blobId": _blob(d), "size": len(d)} for p, d in sorted(repo["files"].items())]
            return self._reply(200, {"_id": repo_id, "id": repo_id, "sha": repo["sha"], "private": repo["private"],
                                     "siblings": siblings, "tags": [], "downloads": 0, "likes": 0,
                                     "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z"})
        self._reply(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        self.state.tokens.append(self.headers.get("authorization"))
        parts = urlparse(self.path).path.strip("/").split("/")
        body = self._body()
        if parts == ["api", "repos", "create"]:
            req = json.loads(body)
            repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
            if repo_id in self.state.repos:
                return self._reply(409, {"error": "You already created this dataset repo", "url": f"http://{self.headers['Host']}/datasets/{repo_id}"})
            self.state.repos[repo_id] = {"sha": "0" * 40, "files": {}, "private": req.get("visibility", "private" if req.get("private") else "public") != "public"}
            return self._reply(200, {"url": f"http://{self.headers['Host']}/datasets/{repo_id}", "name": repo_id})
        if parts == ["api", "validate-yaml"]:
            return self._validate_yaml(json.loads(body)["content"])
        if parts[:2] == ["api", "datasets"]:
            repo_id, rest = self._repo(parts[2:])
            repo = self.state.repos.get(repo_id)
            if repo is None:
                return self._reply(404, {"error": "Repository not found"})
            if rest[:1] == ["preupload"]:
                files = json.loads(body)["files"]
                return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                   for f in files]})
            if rest[:1] == ["commit"]:
                lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
                header = next(x["value"] for x in lines if x["key"] == "header")
                for x in lines:
                    if x["key"] == "file":
                        v = x["value"]
                        data = base64.b64decode(v["content"]) if v.get("encoding") == "base64" else v["content"].encode()
                        repo["files"][v["path"]] = data
                    elif x["key"] == "deletedFile":
                        repo["files"].pop(x["value"]["path"], None)
                repo["sha"] = hashlib.sha1(json.dumps(sorted((p, _blob(d)) for p, d in repo["files"].items())).encode()
                                           + repo["sha"].encode()).hexdigest()
                self.state.commits.append({"repo": repo_id, "summary": header.get("summary"), "sha": repo["sha"]})
                return self._reply(200, {"commitUrl": f"http://{self.headers['Host']}/datasets/{repo_id}/commit/{repo['sha']}",
                                         "commitOid": repo["sha"], "pullRequestUrl": None})
        self._reply(404, {"error": f"no route {self.path}"})


    def _validate_yaml(self, readme: str) -> None:
        """The README's front matter must parse, and each config must name its data files."""
        import yaml

        if not readme.startswith("---\n"):
            return self._reply(200, {"warnings": [{"message": "empty or missing yaml metadata"}]})
        try:
            meta = yaml.safe_load(readme.split("---\n")[1])
        except yaml.YAMLError as exc:
            return self._reply(400, {"errors": [{"message": str(exc)}]})
        bad = [c for c in meta.get("configs", []) if not c.get("config_name") or not c.get("data_files")]
        if bad:
            return self._reply(400, {"errors": [{"message": f"configs without name or data_files: {bad}"}]})
        self.state.validated.append(meta)
        return self._reply(200, {"warnings": []})


def start() -> tuple[ThreadingHTTPServer, HubState, str]:
    state = HubState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Handler,), {"state": state}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state, f"http://127.0.0.1:{server.server_address[1]}"
