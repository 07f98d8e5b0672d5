"""The bottom floor: what every layer above uses and that imports nothing of ours.

``once`` (warnings logged once, never with exception text) and ``bounded`` (maps and sets
bounded in count, and in age for per-run state).
"""
