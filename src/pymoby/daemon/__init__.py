"""Managers and the composition root (daemon.py, imported by nothing)."""
