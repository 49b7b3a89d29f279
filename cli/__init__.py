"""The ``codec`` command line (installed as ``codec.cli``)."""
