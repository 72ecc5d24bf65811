"""Adapters that turn other formats into the agency data package."""
