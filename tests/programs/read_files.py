"""A child that writes what it was given to the file named in argv[1], then exits 0.

argv: OUT_FILE NAME [NAME...]. Writes {"pid", "env": {NAME: value}, "files": {NAME: the
content of the file whose path $NAME holds, when it is one}} as JSON, atomically.
"""

import json
import os
import sys

out, names = sys.argv[1], sys.argv[2:]
files = {}
for name in names:
    value = os.environ.get(name, "")
    if os.path.isfile(value):
        with open(value, encoding="utf-8", errors="surrogateescape") as fh:
            files[name] = fh.read()
with open(out + ".tmp", "w", encoding="utf-8") as fh:
    json.dump({"pid": os.getpid(), "env": {n: os.environ.get(n) for n in names}, "files": files}, fh, ensure_ascii=True)
os.rename(out + ".tmp", out)
