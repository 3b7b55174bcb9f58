"""A toy architecture with its own checkpoint format, registered by tests only."""
