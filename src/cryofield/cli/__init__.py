"""The ``cryofield`` command line: one thin module per command."""
