"""Adapters for the frameworks people train restoration and generative models with.

One module per framework; importing ``stftblur`` or this package imports none of them, and
importing a module without its framework raises :class:`stftblur.errors.MissingExtraError` (an
:class:`ImportError`) naming the extra to install:

* :mod:`stftblur.integrations.basicsr` (``pip install 'stftblur[basicsr]'``): ``LocalPhaseLoss``
  in BasicSR's ``LOSS_REGISTRY`` and ``calculate_lpcsi`` in its ``METRIC_REGISTRY``.
* :mod:`stftblur.integrations.mmengine` (``stftblur[mmengine]``): ``LocalPhaseLoss`` in mmengine's
  root ``MODELS`` and an ``LPCSI`` metric in its root ``METRICS`` (so mmagic configs see them too).
* :mod:`stftblur.integrations.torchmetrics` (``stftblur[torchmetrics]``): ``LPCSI`` and
  ``SpectralDeficit`` as ``torchmetrics.Metric`` subclasses with distributed states.
* :mod:`stftblur.integrations.lightning` (``stftblur[lightning]``): ``BlurMonitor``, a callback
  that logs the blur of a generator's samples while it trains.

``docs/frameworks.md`` shows the config or code for each and the versions they were tested with.
"""

__all__: list = []
