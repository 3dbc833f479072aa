"""The ``stftblur`` command line (thin: all work happens in the :mod:`stftblur` library)."""
