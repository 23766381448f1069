"""pymoby.archive."""
