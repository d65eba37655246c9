"""The browser app: static assets served by the daemon."""
