"""Watchdog for the Tahoe nodes that the Rust crate `local-grid` starts.

The Rust test process cannot be trusted to stop its nodes: a grid kept in a
`static` is never dropped, and a killed test process runs no code at all. So
every process started here gets a pipe on its standard input whose only write
end lives in the test process. The kernel closes that end however the test
process ends, and end-of-file on standard input is the signal to clean up.

Usage:
  watchdog.py node TAHOE NODEDIR LOCKFILE
      Runs `TAHOE run --allow-stdin-close NODEDIR` with its output going to
      this process's stderr, prints the node's PID on a line of its own, and
      stops the node (SIGTERM, SIGKILL after 5 s) on SIGTERM/SIGINT/SIGHUP or
      when standard input reaches end-of-file. Exits when the node exits.
      Holds a shared flock on LOCKFILE while the node may be running.
  watchdog.py janitor LOCKFILE BASEDIR
      Waits for end-of-file on standard input, then for every node watchdog
      to let go of LOCKFILE, then removes BASEDIR.
"""

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading

GRACE_SECONDS = 5.0


def wait_for_eof():
    """Block until the test process closes (or loses) its end of our stdin."""
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass


def run_node(tahoe, nodedir, lockfile):
    lock = open(lockfile, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        # The janitor already holds the lock exclusively: the grid is being
        # torn down, so this node must not start.
        sys.stderr.write("local-grid watchdog: grid is shutting down\n")
        return 1

    child = subprocess.Popen(
        [tahoe, "run", "--allow-stdin-close", nodedir],
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr.fileno(),
        stderr=subprocess.STDOUT,
        close_fds=True,
    )
    sys.stdout.write("%d\n" % child.pid)
    sys.stdout.flush()

    state = {"stopping": False}

    def stop(_signum=None, _frame=None):
        if state["stopping"]:
            return
        state["stopping"] = True
        if child.poll() is None:
            child.terminate()
            # A node that ignores SIGTERM still has to go.
            timer = threading.Timer(GRACE_SECONDS, child.kill)
            timer.daemon = True
            timer.start()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)

    def watch_parent():
        wait_for_eof()
        # Signal handlers run on the main thread, which is blocked in wait();
        # sending ourselves SIGTERM funnels both paths through stop().
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch_parent, daemon=True).start()

    code = child.wait()
    return 128 - code if code < 0 else code


def run_janitor(lockfile, basedir):
    # Ctrl-C in a terminal reaches the whole process group; the janitor must
    # outlive it to clean up once the node watchdogs are done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    wait_for_eof()
    with open(lockfile, "a") as lock:
        # Blocks until every node watchdog has exited, i.e. every node is gone.
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(basedir, ignore_errors=True)
    return 0


def main(argv):
    if len(argv) == 5 and argv[1] == "node":
        return run_node(argv[2], argv[3], argv[4])
    if len(argv) == 4 and argv[1] == "janitor":
        return run_janitor(argv[2], argv[3])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
