"""Pydantic models of archsearch's config files. Imports no torch."""
