"""Errors every app raises and every door (API, admin, pages) translates the same way."""


class AppendOnlyError(Exception):
    """Raised when code tries to change or delete a record that is append-only."""
