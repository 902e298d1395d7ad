"""A child that writes its environment, pid and argv as JSON to the file named in argv[1].

argv: OUT_FILE [ARGS...]. The write is atomic (temporary name, then rename), so a
test polling for OUT_FILE never reads half of it.
"""

import json
import os
import sys

out = sys.argv[1]
with open(out + ".tmp", "w", encoding="utf-8") as fh:
    json.dump({"pid": os.getpid(), "env": dict(os.environ), "argv": sys.argv[2:]}, fh)
os.rename(out + ".tmp", out)
