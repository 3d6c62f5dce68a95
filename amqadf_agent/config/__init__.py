"""Configuration of the agent: the one settings table, layers, secrets, validation and feature flags.

The bottom layer of the package: ``runtime/``, ``resilience/`` and ``cli/`` build on it, and it
imports nothing of theirs. ``config.schema`` is the one table of keys (default, parser, flat name,
variables), parsed by the one set of parsers in ``config.validators``. ``ProductionConfig``
(``config.production``) merges defaults < environment profile < file < environment variables <
overrides into its typed groups, read from files and the environment by ``config.sources``;
``AgentSettings`` (``config.settings``) is the flat view ``start()`` runs on. ``Secret`` and the
providers live in ``config.secrets``, feature flags in ``config.flags``. Importing this package
imports none of them.
"""
