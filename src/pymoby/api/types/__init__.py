"""pymoby.api.types."""
