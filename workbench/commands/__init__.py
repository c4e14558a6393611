"""Subsystem command groups of the ``workbench`` CLI (``workbench <subsystem> <verb>``).

Each module exposes ``register(subparsers)``; :mod:`workbench.cli` lists them in
``SUBSYSTEM_COMMANDS``. Handlers import heavy libraries inside, so ``workbench --help`` is fast.
"""
