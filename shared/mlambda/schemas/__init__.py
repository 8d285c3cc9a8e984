"""Pydantic models for API bodies, events and stored entities."""
