"""The ``pipeline`` layer (see ARCHITECTURE.md)."""
