"""Test doubles and fixtures for applications built on voicelive-sip (also used by our own tests)."""

__all__: list[str] = []
