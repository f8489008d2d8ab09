"""pid 1 of an emulated sandbox's PID namespace (started by isolation.py, never imported).

    box_init.py [TMP [KEEP ...]]

With ``TMP``, the box gets a ``/tmp`` of its own first, as a VM has: ``TMP`` (a host
directory) is bind-mounted on ``/tmp`` in the box's mount namespace (private, so the host
never sees it), and each ``KEEP`` (a host path under ``/tmp`` the box must still reach: the
emulator's own directory, where the box's home and the ``donmai`` stand-in live) is mounted
back at its path. It says ``ready private-tmp`` then, ``ready`` when it could not (the box
shares the host's ``/tmp``, as in the fallback).

Then it reaps the orphans reparented to it (``nohup ... &`` children), so they do not linger
as zombies, and otherwise sleeps. SIGCHLD stays blocked so no exit is missed between "no
child left" and the wait for the next one. Runs with ``python -S -I``: stdlib only.
"""

import ctypes
import os
import signal
import sys

MS_BIND = 4096


def _bind(source: str, target: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), target.encode(), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def _private_tmp(tmp: str, keep: list[str]) -> bool:
    held = []
    try:
        # Opened before /tmp is covered: the paths are mounted back from these handles.
        held = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in keep]
        _bind(tmp, "/tmp")
        for path, fd in held:
            os.makedirs(path, exist_ok=True)
            _bind(f"/proc/self/fd/{fd}", path)
        return True
    except OSError:
        return False
    finally:
        for _path, fd in held:
            os.close(fd)


signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
private = len(sys.argv) > 1 and _private_tmp(sys.argv[1], sys.argv[2:])
sys.stdout.write("ready private-tmp\n" if private else "ready\n")
sys.stdout.flush()
os.close(1)
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        signal.sigwait({signal.SIGCHLD})
    except InterruptedError:
        pass
