"""pymoby.server.routes."""
