"""Deprecated: ``tune_allocator`` changes the whole process and moved to the command line
(``stftblur_cli._process``); this name still works for one release, with a
:class:`DeprecationWarning`."""

from stftblur._deprecated import moved

__all__: list = []

__getattr__ = moved("stftblur.training.system", {"tune_allocator": "stftblur_cli._process"})
