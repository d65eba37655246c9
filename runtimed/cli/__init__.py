"""The ``runt`` command line: daemon, kernels and runtimes, the console REPL, notebooks.

Subcommands load lazily (see ``runtimed.cli.group``) so that ``runt --help`` and ``runt ps``
never import the server, the kernel manager or the session stack.
"""
