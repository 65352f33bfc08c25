"""Orbax checkpoints of the whole train state that survive kills, damage and full disks.

manager.py saves and restores them (asynchronously, keeping the last few, moving damaged ones
aside); manifest.py seals each finished save with the SHA-256 of its files and checks it.
"""
