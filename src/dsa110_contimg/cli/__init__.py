"""The ``contimg-photometry`` command line: thin commands over the library layers."""
