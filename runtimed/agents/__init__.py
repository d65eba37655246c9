"""Agents in the loop: the notebook tools (defined once), their rendering for models, approvals, MCP.

``tools`` is protocol-free and reused by AI cells; ``mcp_server`` adapts it to MCP. Imports go
one way: this package uses ``runtimed.client`` and ``runtimed.schema``, never the reverse.
"""
