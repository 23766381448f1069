"""pymoby.distribution."""
