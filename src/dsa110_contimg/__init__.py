"""DSA-110 continuum imaging pipeline: the photometry service.

Subpackages
-----------
photometry
    Image model, noise maps, forced photometry, catalogues, the
    :class:`~dsa110_contimg.photometry.PhotometryManager` workflow,
    normalisation, variability and ESE detection.
store
    SQLAlchemy schema, engines and migrations for the products database and
    the data registry.
service
    The long-running daemon: watcher, classifier, durable job queue, worker
    pool, systemd notification.
cli
    The ``contimg-photometry`` command line.
"""

__version__ = "0.1.0"
