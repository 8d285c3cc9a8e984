"""mlambda: the shared layer of the serverless ML platform (schemas, services, ports, adapters)."""

__version__ = "0.1.0"
