"""The runtimed daemon: ASGI app, sync endpoint, REST, auth, discovery."""
