"""The built-in demo service that `amqadf-agent demo` runs."""
