"""The official Python SDK's files API (``sbx.files``, sync and async) against the emulator.

``list/exists/get_info/make_dir/remove/rename`` travel as envd filesystem Connect calls,
``read/write`` through envd's ``/files`` HTTP endpoint; missing paths answer as envd does.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import pytest
from e2b import (
    AsyncSandbox,
    FileNotFoundException,
    FileType,
    InvalidArgumentException,
    Sandbox,
    SandboxNotRunningException,
)

from pools.e2b_emulator.testing import RunningEmulator

BINARY = bytes(range(256)) * 4 + b"\r\n--boundary\r\n\x00"


@pytest.fixture
def sbx(e2b_emulator: RunningEmulator) -> Iterator[Sandbox]:
    box = Sandbox.create("base", timeout=60)
    yield box
    box.kill()


def test_write_then_read_text_bytes_and_stream(sbx: Sandbox) -> None:
    info = sbx.files.write("notes/today.txt", "héllo\n")
    assert (info.name, info.path, info.type) == (
        "today.txt",
        "/home/user/notes/today.txt",
        FileType.FILE,
    )
    assert sbx.files.read("notes/today.txt") == "héllo\n"
    assert sbx.files.read("/home/user/notes/today.txt") == "héllo\n"
    assert sbx.files.read("~/notes/today.txt") == "héllo\n"
    # The box's commands see the same file, and the API sees what commands write.
    assert sbx.commands.run("cat notes/today.txt").stdout == "héllo\n"
    sbx.commands.run("printf 'from a command' > made.txt")
    assert sbx.files.read("made.txt") == "from a command"

    sbx.files.write("blob.bin", BINARY)
    assert bytes(sbx.files.read("blob.bin", format="bytes")) == BINARY
    assert b"".join(sbx.files.read("blob.bin", format="stream")) == BINARY
    sbx.files.write("streamed.bin", io.BytesIO(BINARY))  # octet-stream upload
    assert bytes(sbx.files.read("streamed.bin", format="bytes", gzip=True)) == BINARY
    sbx.files.write("zipped.txt", "compressed on the way", gzip=True)
    assert sbx.files.read("zipped.txt") == "compressed on the way"
    sbx.files.write("notes/today.txt", "overwritten")
    assert sbx.files.read("notes/today.txt") == "overwritten"


def test_write_files_in_one_multipart_upload(sbx: Sandbox) -> None:
    written = sbx.files.write_files(
        [{"path": "a/one.txt", "data": "1"}, {"path": "/home/user/b/two.bin", "data": BINARY}]
    )
    assert [w.path for w in written] == ["/home/user/a/one.txt", "/home/user/b/two.bin"]
    assert sbx.files.read("a/one.txt") == "1"
    assert bytes(sbx.files.read("b/two.bin", format="bytes")) == BINARY


def test_list_exists_and_get_info(sbx: Sandbox) -> None:
    sbx.files.write("src/main.py", "print('hi')\n")
    sbx.files.write("src/pkg/mod.py", "")
    sbx.files.write("README", "read me")

    top = {e.name: e for e in sbx.files.list("/home/user")}
    assert set(top) == {"README", "src"}
    assert top["src"].type == FileType.DIR and top["src"].path == "/home/user/src"
    assert top["README"].type == FileType.FILE and top["README"].size == 7
    assert top["README"].permissions.startswith("-rw")
    deep = {e.path for e in sbx.files.list("src", depth=2)}
    assert deep == {"/home/user/src/main.py", "/home/user/src/pkg", "/home/user/src/pkg/mod.py"}

    assert sbx.files.exists("src/main.py") is True
    assert sbx.files.exists("src") is True
    assert sbx.files.exists("src/nope.py") is False
    info = sbx.files.get_info("src/main.py")
    assert (info.name, info.type, info.size) == ("main.py", FileType.FILE, 12)
    assert sbx.files.get_info("src").type == FileType.DIR


def test_make_dir_remove_and_rename(sbx: Sandbox) -> None:
    assert sbx.files.make_dir("work/deep/er") is True
    assert sbx.files.make_dir("work/deep/er") is False  # already there
    assert sbx.files.get_info("work/deep").type == FileType.DIR
    sbx.files.write("work/file.txt", "x")
    with pytest.raises(InvalidArgumentException, match="not a directory"):
        sbx.files.make_dir("work/file.txt")

    moved = sbx.files.rename("work/file.txt", "elsewhere/renamed.txt")
    assert moved.path == "/home/user/elsewhere/renamed.txt"
    assert sbx.files.read("elsewhere/renamed.txt") == "x"
    assert sbx.files.exists("work/file.txt") is False

    sbx.files.remove("elsewhere/renamed.txt")
    sbx.files.remove("work")  # a whole tree
    sbx.files.remove("never-was")  # envd's RemoveAll: not an error
    assert not sbx.files.exists("work") and not sbx.files.exists("elsewhere/renamed.txt")


def test_missing_paths_and_wrong_kinds_answer_as_envd(sbx: Sandbox) -> None:
    sbx.files.write("dir/file.txt", "x")
    with pytest.raises(
        FileNotFoundException, match=r"path '/home/user/missing\.txt' does not exist"
    ):
        sbx.files.read("missing.txt")
    with pytest.raises(FileNotFoundException, match="file not found"):
        sbx.files.get_info("missing.txt")
    with pytest.raises(FileNotFoundException, match="path not found"):
        sbx.files.list("missing")
    with pytest.raises(FileNotFoundException, match="source file not found"):
        sbx.files.rename("missing.txt", "other.txt")
    with pytest.raises(InvalidArgumentException, match="is a directory"):
        sbx.files.read("dir")
    with pytest.raises(InvalidArgumentException, match="is a directory"):
        sbx.files.write("dir", "would clobber a directory")
    with pytest.raises(InvalidArgumentException, match="path is not a directory"):
        sbx.files.list("dir/file.txt")


def test_files_of_a_paused_or_killed_sandbox(e2b_emulator: RunningEmulator) -> None:
    box = Sandbox.create("base", timeout=60)
    box.files.write("kept.txt", "still here")
    box.pause()
    with pytest.raises(SandboxNotRunningException):
        box.files.read("kept.txt")
    with pytest.raises(SandboxNotRunningException):
        box.files.list(".")
    Sandbox.connect(box.sandbox_id, timeout=60)
    assert box.files.read("kept.txt") == "still here"  # paused keeps the filesystem
    box.kill()
    with pytest.raises(SandboxNotRunningException):
        box.files.exists("kept.txt")


def test_async_files(e2b_emulator: RunningEmulator) -> None:
    async def scenario() -> None:
        box = await AsyncSandbox.create("base", timeout=60)
        info = await box.files.write("a/b.txt", "async text")
        assert info.path == "/home/user/a/b.txt"
        assert await box.files.read("a/b.txt") == "async text"
        await box.files.write("bin", BINARY)
        assert bytes(await box.files.read("bin", format="bytes")) == BINARY
        assert {e.name for e in await box.files.list(".")} == {"a", "bin"}
        assert await box.files.exists("a/b.txt") is True
        assert await box.files.exists("a/c.txt") is False
        assert (await box.files.get_info("a")).type == FileType.DIR
        assert await box.files.make_dir("a/d") is True
        assert await box.files.make_dir("a/d") is False
        await box.files.remove("a")
        assert await box.files.exists("a") is False
        with pytest.raises(FileNotFoundException):
            await box.files.read("a/b.txt")
        with pytest.raises(FileNotFoundException):
            await box.files.get_info("a")
        await box.kill()

    asyncio.run(scenario())
