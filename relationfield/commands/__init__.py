"""The ``relationfield`` subcommands, one module per command group (``relationfield.cli`` gathers them).

Each subcommand is a typed dataclass whose fields and docstrings tyro turns into flags and help text, and
whose ``main`` runs it and prints the result. The modules that do the work are imported inside ``main``, so
that ``relationfield --help`` stays fast and a broken optional dependency only affects the command that needs it.
"""
