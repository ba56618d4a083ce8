"""`python -m app.guard FD GRACE_S -- COMMAND...`: run COMMAND for as
long as the process holding the other end of the lifeline pipe FD lives.

The guard between `app.process.spawn` and every child it starts:

- It starts COMMAND from its main thread before it has any other thread, so setting
  PR_SET_PDEATHSIG there (`preexec_fn`) is safe, and that thread lives as long as the
  guard: a guard killed by SIGKILL (`process.stop` after its grace) takes COMMAND with
  it, by SIGKILL too.
- A thread of its own blocks reading FD. The only write end is in the parent process,
  never written and closed by the kernel when that process ends, however (SIGKILL
  included): EOF, and the guard stops COMMAND (SIGTERM, SIGKILL after GRACE_S seconds).
- SIGTERM to the guard (`process.stop`) is passed on to COMMAND; a terminal's ^C
  reaches COMMAND itself (same process group), so the guard ignores SIGINT.
- The guard ends as COMMAND ended: the same exit status, or the same signal.

It imports nothing of the product: it starts in ~20 ms.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

__all__ = ["main"]

_PR_SET_PDEATHSIG = 1


def _die_with(guard: int) -> Callable[[], None]:
    def preexec() -> None:  # pragma: no cover - runs in the child, between fork and exec
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != guard:  # the guard died before prctl took effect
            os._exit(1)

    return preexec


def _watch(lifeline: int, child: subprocess.Popen[bytes], grace_s: float) -> None:
    while os.read(lifeline, 1):  # the parent never writes: only EOF comes
        pass
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(grace_s)
        except subprocess.TimeoutExpired:
            child.kill()


def main(argv: Sequence[str]) -> int:
    lifeline, grace_s, separator, *command = argv
    if separator != "--" or not command:
        sys.stderr.write("usage: python -m app.guard FD GRACE_S -- CMD...\n")
        return 2
    child = subprocess.Popen(command, preexec_fn=_die_with(os.getpid()))

    def pass_on(signum: int, _: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # after the spawn: COMMAND keeps ^C
    threading.Thread(
        target=_watch, args=(int(lifeline), child, float(grace_s)), name="lifeline", daemon=True
    ).start()
    code = child.wait()
    if code < 0:  # end the way COMMAND ended, so the parent sees the same status
        with contextlib.suppress(OSError):  # SIGKILL and SIGSTOP keep their default
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
