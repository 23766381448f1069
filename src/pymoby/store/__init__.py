"""Persistent state: metadata DB (SQLite), content, layers, images, graph drivers."""
