"""boxal's Python client: ``from boxal.client import Client``."""
