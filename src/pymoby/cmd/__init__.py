"""pymoby.cmd."""
