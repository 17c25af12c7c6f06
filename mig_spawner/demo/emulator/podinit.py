"""A tiny init for process-mode pods, in the role of tini or a container's PID 1.

Run as ``python -I -S podinit.py <kubelet-pid> -- <argv...>`` (stdlib only, so it starts
fast and never imports the package). It makes itself a child subreaper, so every descendant
of the pod, even one that starts its own session (Jupyter kernels do), stays below it. Then:

* SIGTERM/SIGINT: forwarded to every descendant; if they are not all gone in
  ``KILL_AFTER`` seconds, they are killed;
* SIGUSR1: every descendant is SIGKILLed at once and the init exits (the kubelet's SIGKILL);
* when the main process exits, the rest are SIGKILLed (a container ends with its PID 1) and
  the init exits with the main process's exit code (128 + N when killed by signal N);
* if the kubelet dies, the kernel sends the init SIGTERM (``PR_SET_PDEATHSIG``).
"""

import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
KILL_AFTER = 30


def _prctl(option: int, value: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except Exception:
        pass


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def signal_all(sig: int) -> None:
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def kill_all_and_exit(code: int) -> None:
    signal_all(signal.SIGKILL)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.01)
    os._exit(code)


def main() -> None:
    kubelet_pid = int(sys.argv[1])
    argv = sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:]
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != kubelet_pid:  # the kubelet died before PDEATHSIG was armed
        os._exit(137)
    if not argv:
        sys.stderr.write("podinit: no command\n")
        os._exit(127)
    child = os.fork()
    if child == 0:
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            sys.stderr.write(f"podinit: cannot run {argv[0]!r}: {exc}\n")
            sys.stderr.flush()
        os._exit(127)

    def on_term(signum: int, frame: object) -> None:
        signal_all(signal.SIGTERM)
        signal.alarm(KILL_AFTER)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGUSR1, lambda signum, frame: kill_all_and_exit(137))
    signal.signal(signal.SIGALRM, lambda signum, frame: kill_all_and_exit(137))
    code = 0
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            break
    kill_all_and_exit(128 - code if code < 0 else code)


if __name__ == "__main__":
    main()
