"""The long-running photometry daemon: configuration, watching, classification,
the worker pool, systemd notification, logging and the status queries."""
