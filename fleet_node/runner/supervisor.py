"""The job container's main process: runs the job's ``run.py``, ends it when the agent is gone.

This file is the container's command (``python3 -I -S -c <this source>``, under Docker's init;
standard library only, nothing from the job's folder or environment is imported). The agent keeps
the container's stdin attached for the job's whole life and writes nothing to it. When the agent
process dies, however it dies, the kernel closes that connection and the Docker engine closes the
container's stdin (the container is created with ``StdinOnce``): this supervisor reads EOF, kills
the job's process group and exits, and Docker's init then ends whatever is left in the container.
So no job runs on unsupervised after its agent, and the dispatcher's requeue cannot race a job
that is still driving the pendulum.

Exit status: the job's own (128 + n when signal n ended it); 137 when the agent went away.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

JOB_COMMAND = ("python3", "-u", "run.py")
"""The job's entrypoint, unbuffered, run in the container's working directory (the code); the
supervisor's own arguments follow it (the job's ``run.py`` arguments)."""
ORPHANED_EXIT = 128 + signal.SIGKILL
"""Exit status when the agent went away (as if the container had been killed)."""
PR_SET_DUMPABLE = 4
"""prctl(2) option (linux/prctl.h)."""


def start_job() -> int:
    """Fork and exec the job in a session of its own with stdin from /dev/null; its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
            os.execvp(JOB_COMMAND[0], [*JOB_COMMAND, *sys.argv[1:]])  # argv[0] is "-c"
        finally:
            os._exit(127)  # exec failed: never run on as a second supervisor
    return pid


def watch_lifeline(job: int) -> None:
    """Block until stdin ends (the agent is gone), then kill the job's process group and exit."""
    while os.read(0, 4096):
        pass  # the agent sends nothing; whatever comes is ignored
    try:
        os.killpg(job, signal.SIGKILL)
    except OSError:  # the job has ended meanwhile
        pass
    os._exit(ORPHANED_EXIT)


def main() -> None:
    """Run the job; exit with its status, or as soon as the agent is gone."""
    # Not dumpable: the job runs as the same uid, and must be unable to ptrace this process or
    # open its stdin through /proc to keep itself alive after the agent.
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    job = start_job()
    threading.Thread(target=watch_lifeline, args=(job,), daemon=True).start()
    code = os.waitstatus_to_exitcode(os.waitpid(job, 0)[1])
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
