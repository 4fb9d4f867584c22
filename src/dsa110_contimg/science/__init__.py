"""The ``science`` layer (see ARCHITECTURE.md)."""
