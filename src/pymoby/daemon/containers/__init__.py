"""The container manager: records, life cycle, exits, live restore (see service.py)."""
