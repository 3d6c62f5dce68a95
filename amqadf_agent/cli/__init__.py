"""Command-line tools: ``amqadf-agent`` and ``amqadf-analyze``."""
