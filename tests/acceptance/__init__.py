"""Connector Acceptance Tests (our CAT): see conftest.py."""
