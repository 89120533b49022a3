"""The ``sci-edge`` command line."""
