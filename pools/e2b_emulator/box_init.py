"""pid 1 of an emulated sandbox's PID namespace (started by isolation.py, never imported).

It reaps the orphans reparented to it (``nohup ... &`` children), so they do not linger
as zombies, and otherwise sleeps. SIGCHLD stays blocked so no exit is missed between
"no child left" and the wait for the next one. Runs with ``python -S -I``: stdlib only.
"""

import os
import signal
import sys

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
sys.stdout.write("ready\n")
sys.stdout.flush()
os.close(1)
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        signal.sigwait({signal.SIGCHLD})
    except InterruptedError:
        pass
