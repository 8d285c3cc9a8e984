"""Registry: registered models, versions, aliases, endpoint configs, promotion gate and history."""
