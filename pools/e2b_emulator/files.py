"""envd's filesystem: the ``filesystem.Filesystem`` Connect service and the ``/files`` endpoint.

``files.list/exists/get_info/remove/make_dir/rename`` are Connect calls; ``files.read`` and
``files.write`` go through plain HTTP ``GET``/``POST /files``. Codes and messages follow
envd: a missing path is Connect ``not_found`` (``file not found: ...``) or HTTP 404
(``path '<path>' does not exist``), which the SDKs raise as ``FileNotFoundException`` /
``FileNotFoundError`` (``exists`` turns it into False); an existing directory is
``already_exists`` for ``make_dir`` (False in the SDKs); removing a missing path succeeds.

Paths resolve as envd resolves them for user ``user``: ``~``, relative paths and
``/home/user`` are the sandbox's home (its private directory here); ``/tmp`` is the box's
own ``/tmp`` where it has one (isolation.py); other absolute paths are host paths, exactly
what the box's commands see (they share the rest of the host filesystem). Paths under the
home are reported back as ``/home/user/...`` and under the box's /tmp as ``/tmp/...``, as
in an E2B sandbox.
"""

from __future__ import annotations

import grp
import gzip
import json
import os
import pwd
import shutil
import stat as stat_mod
from pathlib import Path
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from e2b.envd.filesystem import filesystem_connect, filesystem_pb
from protobuf.wkt.google.protobuf.timestamp_pb import Timestamp

from .envd import SandboxScoped
from .processes import SANDBOX_HOME_ALIAS
from .sandbox import Sandbox

FileType = filesystem_pb.FileType
TMP = Path("/tmp")
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, body, raw headers


def resolve(sandbox: Sandbox, requested: str) -> Path:
    """The host path for a sandbox path (``..`` collapsed, symlinks not followed)."""
    text = requested.strip()
    if text == "~" or text.startswith("~/"):
        text = SANDBOX_HOME_ALIAS + text[1:]
    if text == SANDBOX_HOME_ALIAS or text.startswith(SANDBOX_HOME_ALIAS + "/"):
        path = sandbox.home / text[len(SANDBOX_HOME_ALIAS) :].lstrip("/")
    elif text.startswith("/"):
        return _box_tmp(sandbox, Path(os.path.normpath(text)))
    else:
        path = sandbox.home / text
    return Path(os.path.normpath(path))


def _box_tmp(sandbox: Sandbox, path: Path) -> Path:
    """``/tmp/...`` in the box's own /tmp, as its commands see it (the emulator's own
    directory under /tmp, which the box sees at its path, excepted)."""
    tmp = sandbox.box.private_tmp
    if (
        tmp is None
        or not path.is_relative_to(TMP)
        or any(path.is_relative_to(k) for k in sandbox.box.kept)
    ):
        return path
    return tmp / path.relative_to(TMP)


def shown(sandbox: Sandbox, path: Path) -> str:
    """How the sandbox names ``path``: ``/home/user/...`` for its home, else as is."""
    home = Path(os.path.normpath(sandbox.home))
    if path == home:
        return SANDBOX_HOME_ALIAS
    if path.is_relative_to(home):
        return f"{SANDBOX_HOME_ALIAS}/{path.relative_to(home)}"
    tmp = sandbox.box.private_tmp
    if tmp is not None and path.is_relative_to(tmp):
        return str(TMP / path.relative_to(tmp))
    return str(path)


def _go_error(op: str, shown_path: str, exc: OSError) -> str:
    """Go's ``*PathError`` text, which is what envd's messages embed."""
    reason = (exc.strerror or str(exc)).lower()
    return f"{op} {shown_path}: {reason}"


def _name_of(lookup: Any, ident: int) -> str:
    try:
        return str(lookup(ident)[0])
    except KeyError:
        return str(ident)


def _kind(mode: int) -> FileType:
    if stat_mod.S_ISDIR(mode):
        return FileType.DIRECTORY
    return FileType.FILE


def entry_info(sandbox: Sandbox, path: Path) -> filesystem_pb.EntryInfo:
    info = path.lstat()
    is_link = stat_mod.S_ISLNK(info.st_mode)
    target: str | None = None
    kind = _kind(info.st_mode)
    if is_link:
        target = os.readlink(path)
        try:
            kind = _kind(path.stat().st_mode)
        except OSError:
            kind = FileType.FILE  # a dangling link
    seconds, nanos = divmod(info.st_mtime_ns, 1_000_000_000)
    return filesystem_pb.EntryInfo(
        name=path.name,
        type=kind,
        path=shown(sandbox, path),
        size=info.st_size,
        mode=stat_mod.S_IMODE(info.st_mode),
        permissions=stat_mod.filemode(info.st_mode),
        owner=_name_of(pwd.getpwuid, info.st_uid),
        group=_name_of(grp.getgrgid, info.st_gid),
        modified_time=Timestamp(seconds=seconds, nanos=nanos),
        symlink_target=target,
        is_symlink=is_link,
    )


class FilesystemService(SandboxScoped, filesystem_connect.Filesystem):
    """envd's ``filesystem.Filesystem`` over the sandbox's directory (watchers: unimplemented)."""

    async def stat(
        self,
        request: filesystem_pb.StatRequest,
        ctx: RequestContext[filesystem_pb.StatRequest, filesystem_pb.StatResponse],
        /,
    ) -> filesystem_pb.StatResponse:
        sandbox = self._sandbox(ctx)
        path = resolve(sandbox, request.path)
        try:
            return filesystem_pb.StatResponse(entry=entry_info(sandbox, path))
        except FileNotFoundError as exc:
            message = "file not found: " + _go_error("stat", shown(sandbox, path), exc)
            raise ConnectError(Code.NOT_FOUND, message) from exc

    async def list_dir(
        self,
        request: filesystem_pb.ListDirRequest,
        ctx: RequestContext[filesystem_pb.ListDirRequest, filesystem_pb.ListDirResponse],
        /,
    ) -> filesystem_pb.ListDirResponse:
        sandbox = self._sandbox(ctx)
        path = resolve(sandbox, request.path)
        depth = request.depth or 1
        name = shown(sandbox, path)
        try:
            real = path.resolve(strict=True)
        except FileNotFoundError as exc:
            raise ConnectError(
                Code.NOT_FOUND, "path not found: " + _go_error("lstat", name, exc)
            ) from exc
        if not real.is_dir():
            raise ConnectError(Code.INVALID_ARGUMENT, f"path is not a directory: {name}")
        entries: list[filesystem_pb.EntryInfo] = []
        self._walk(sandbox, path, real, depth, entries)
        return filesystem_pb.ListDirResponse(entries=entries)

    def _walk(
        self, sandbox: Sandbox, shown_dir: Path, real: Path, depth: int, out: list[Any]
    ) -> None:
        # Like Go's filepath.WalkDir: lexical order, symlinks listed but not followed.
        try:
            names = sorted(os.listdir(real))
        except OSError as exc:
            raise ConnectError(Code.INTERNAL, f"error reading directory {real}: {exc}") from exc
        for entry in names:
            try:
                out.append(entry_info(sandbox, shown_dir / entry))
            except FileNotFoundError:
                continue  # removed meanwhile
            child = real / entry
            if depth > 1 and child.is_dir() and not child.is_symlink():
                self._walk(sandbox, shown_dir / entry, child, depth - 1, out)

    async def make_dir(
        self,
        request: filesystem_pb.MakeDirRequest,
        ctx: RequestContext[filesystem_pb.MakeDirRequest, filesystem_pb.MakeDirResponse],
        /,
    ) -> filesystem_pb.MakeDirResponse:
        sandbox = self._sandbox(ctx)
        path = resolve(sandbox, request.path)
        name = shown(sandbox, path)
        if path.is_dir():
            raise ConnectError(Code.ALREADY_EXISTS, f"directory already exists: {name}")
        if path.exists():
            raise ConnectError(
                Code.INVALID_ARGUMENT, f"path already exists but it is not a directory: {name}"
            )
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise ConnectError(Code.INTERNAL, _go_error("mkdir", name, exc)) from exc
        entry = filesystem_pb.EntryInfo(name=path.name, type=FileType.DIRECTORY, path=name)
        return filesystem_pb.MakeDirResponse(entry=entry)

    async def move(
        self,
        request: filesystem_pb.MoveRequest,
        ctx: RequestContext[filesystem_pb.MoveRequest, filesystem_pb.MoveResponse],
        /,
    ) -> filesystem_pb.MoveResponse:
        sandbox = self._sandbox(ctx)
        source = resolve(sandbox, request.source)
        destination = resolve(sandbox, request.destination)
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.rename(source, destination)
        except FileNotFoundError as exc:
            message = _go_error(
                f"rename {shown(sandbox, source)}", shown(sandbox, destination), exc
            )
            raise ConnectError(Code.NOT_FOUND, f"source file not found: {message}") from exc
        except OSError as exc:
            raise ConnectError(Code.INTERNAL, f"error renaming: {exc.strerror}") from exc
        return filesystem_pb.MoveResponse(entry=entry_info(sandbox, destination))

    async def remove(
        self,
        request: filesystem_pb.RemoveRequest,
        ctx: RequestContext[filesystem_pb.RemoveRequest, filesystem_pb.RemoveResponse],
        /,
    ) -> filesystem_pb.RemoveResponse:
        sandbox = self._sandbox(ctx)
        path = resolve(sandbox, request.path)
        # envd uses Go's os.RemoveAll: a missing path is not an error.
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            raise ConnectError(
                Code.INTERNAL, f"error removing file or directory: {exc.strerror}"
            ) from exc
        return filesystem_pb.RemoveResponse()


# -- GET/POST /files -----------------------------------------------------------------------


def _json(status: int, body: Any) -> Answer:
    return status, json.dumps(body).encode(), [(b"content-type", b"application/json")]


def _error(status: int, message: str) -> Answer:
    return _json(status, {"code": status, "message": message})


def files_endpoint(
    sandbox: Sandbox,
    method: str,
    query: dict[str, list[str]],
    headers: dict[str, str],
    body: bytes,
) -> Answer:
    """envd's ``/files``: download (GET) and upload (POST, octet-stream or multipart)."""
    path = (query.get("path") or [""])[0]
    if method == "GET":
        return _download(sandbox, path, headers)
    if method == "POST":
        if headers.get("content-encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError) as exc:
                return _error(400, f"error decompressing request body: {exc}")
        return _upload(sandbox, path or None, headers.get("content-type", ""), body)
    return _error(405, f"method {method} is not allowed on /files")


def _download(sandbox: Sandbox, requested: str, headers: dict[str, str]) -> Answer:
    path = resolve(sandbox, requested)
    name = shown(sandbox, path)
    if not path.exists():
        return _error(404, f"path '{name}' does not exist")
    if path.is_dir():
        return _error(400, f"path '{name}' is a directory")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _error(500, f"error opening file '{name}': {exc.strerror}")
    out = [(b"content-type", b"application/octet-stream"), (b"vary", b"Accept-Encoding")]
    if "gzip" in headers.get("accept-encoding", "").lower():
        data = gzip.compress(data)
        out.append((b"content-encoding", b"gzip"))
    return 200, data, out


def _write(sandbox: Sandbox, requested: str, data: bytes) -> dict[str, str] | Answer:
    path = resolve(sandbox, requested)
    name = shown(sandbox, path)
    if path.is_dir():
        return _error(400, f"path is a directory: {name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        return _error(500, f"error writing file: {exc.strerror}")
    return {"path": name, "name": path.name, "type": "file"}


def _upload(sandbox: Sandbox, path: str | None, content_type: str, body: bytes) -> Answer:
    media = content_type.split(";", 1)[0].strip().lower()
    written: list[dict[str, str]] = []
    if media == "application/octet-stream":
        if path is None:
            return _error(400, "path query parameter is required for raw body upload")
        parts = [(path, body)]
    elif media.startswith("multipart/"):
        try:
            parts = [(path or filename, data) for filename, data in _file_parts(content_type, body)]
        except ValueError as exc:
            return _error(400, f"error reading form: {exc}")
    else:
        return _error(
            400,
            f"unsupported content type: {content_type}, "
            "expected multipart/form-data or application/octet-stream",
        )
    for target, data in parts:
        if not target:
            return _error(400, "error resolving path: a file part has no file name")
        result = _write(sandbox, target, data)
        if isinstance(result, tuple):
            return result
        written.append(result)
    return _json(200, written)


def _file_parts(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """(filename, bytes) of each ``file`` part of a multipart body, byte-exact."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise ValueError("no multipart boundary")
    delimiter = b"--" + boundary.encode()
    found = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a part has no header/body separator")
        data = data.removesuffix(b"\r\n")
        disposition = _disposition(head.decode("utf-8", "replace"))
        if disposition.get("name") == "file":
            found.append((disposition.get("filename", ""), data))
    return found


def _disposition(head: str) -> dict[str, str]:
    for line in head.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-disposition":
            params = {}
            for item in value.split(";")[1:]:
                k, _, v = item.strip().partition("=")
                params[k.lower()] = v.strip().strip('"')
            return params
    return {}
