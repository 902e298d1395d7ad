"""``launcher run`` and ``exec``: the supervisor, the rotation policy, the child process, the
reaper, what the child sees (environment, secret files), and its output (pumps and masking).
"""
