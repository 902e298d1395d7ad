"""A child that leaves N orphaned grandchildren and checks that its parent reaps them.

argv: N RESULT_FILE. Each grandchild is double-forked (its parent exits at once),
so it is re-parented to the launcher (PID 1 or subreaper); it records its new
parent and exits. This child then waits until every grandchild has reported
and no zombie child of the launcher is left, and writes a JSON result.
"""

import json
import os
import sys
import time

n = int(sys.argv[1])
result_file = sys.argv[2]
launcher = os.getppid()
report_r, report_w = os.pipe()

for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os.setsid()  # leave our process group: a daemon, not a member of the child's job
        first_parent = os.getpid()
        if os.fork() == 0:
            # Grandchild: wait to be re-parented, report the new parent, exit.
            deadline = time.monotonic() + 10
            while os.getppid() == first_parent and time.monotonic() < deadline:
                time.sleep(0.005)
            os.write(report_w, f"{os.getppid()}\n".encode())
            os._exit(0)
        os._exit(0)  # the intermediate exits: its child is orphaned
    os.waitpid(pid, 0)  # reap the intermediate ourselves (it is our own child)
os.close(report_w)

parents = [int(line) for line in os.fdopen(report_r).read().split()]


def zombies_of(ppid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z" and int(fields[1]) == ppid:
            count += 1
    return count


deadline = time.monotonic() + 10
left = zombies_of(launcher)
while left and time.monotonic() < deadline:
    time.sleep(0.02)  # polling /proc with a deadline: the launcher reaps asynchronously
    left = zombies_of(launcher)
with open(result_file, "w") as fh:
    json.dump({"launcher": launcher, "parents": parents, "zombies": left, "pid": os.getpid()}, fh)
