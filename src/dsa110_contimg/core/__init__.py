"""The ``core`` layer (see ARCHITECTURE.md)."""
