"""The agent's runtime: settings, resource, providers, exporters, and the zero-code entry points."""
