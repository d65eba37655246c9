"""Clients of the daemon: sync client with a local replica, bindings, discovery."""
