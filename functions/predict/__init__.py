"""The predict function: ``POST /models/{name}/predict``."""
