#!/usr/bin/env python3
"""A scriptable fake agent CLI for task tests: a sequence of actions given as arguments.

Actions (run in order)::

    print TEXT          write TEXT and a newline to stdout
    write PATH TEXT     create/overwrite a file in the cwd (the task worktree)
    commit MSG          git add -A && git commit -m MSG
    sleep SECS          sleep
    hang                sleep forever without output (stuck / timeout)
    loop TEXT           print TEXT every 0.05 s forever (busy but never quiet)
    input PROMPT        print PROMPT, read one line from stdin, print "got: <line>"
    child PIDFILE       start a background `sleep` in our process group, write its pid
    exit N              exit with status N
    env NAME            print NAME=<value of $NAME>

Only the standard library, so it runs under any python3.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    i = 0
    while i < len(argv):
        action = argv[i]
        i += 1
        if action == "print":
            print(argv[i], flush=True)
            i += 1
        elif action == "write":
            with open(argv[i], "w") as f:
                f.write(argv[i + 1] + "\n")
            i += 2
        elif action == "commit":
            subprocess.run(["git", "add", "-A"], check=True)
            subprocess.run(
                [
                    "git",
                    "-c",
                    "user.name=Fake",
                    "-c",
                    "user.email=fake@example.com",
                    "commit",
                    "-q",
                    "-m",
                    argv[i],
                ],
                check=True,
            )
            i += 1
        elif action == "sleep":
            time.sleep(float(argv[i]))
            i += 1
        elif action == "hang":
            while True:
                time.sleep(3600)
        elif action == "loop":
            while True:
                print(argv[i], flush=True)
                time.sleep(0.05)
        elif action == "input":
            print(argv[i], flush=True)
            i += 1
            line = sys.stdin.readline().strip()
            print(f"got: {line}", flush=True)
        elif action == "child":
            child = subprocess.Popen(["sleep", "1000"])
            with open(argv[i], "w") as f:
                f.write(str(child.pid))
            i += 1
        elif action == "exit":
            return int(argv[i])
        elif action == "env":
            print(f"{argv[i]}={os.environ.get(argv[i], '')}", flush=True)
            i += 1
        else:
            print(f"fake_agent: unknown action {action}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
