"""Configuration of the agent: layers, secrets, validation and feature flags.

``ProductionConfig`` (``config.production``) merges defaults < environment profile < file <
environment variables < overrides into typed groups (``config.schema``), read from files and the
environment by ``config.sources``. ``Secret`` and the providers live in ``config.secrets``, feature
flags in ``config.flags``. Importing this package imports none of them.
"""
