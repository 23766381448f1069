"""The API server: listeners, router, middleware, streams. Talks to backends only via Protocols."""
