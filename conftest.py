"""Root pytest configuration: doctests of an integration module are collected only when its
framework is installed (``pip install 'stftblur[frameworks]'``); the framework tests in tests/
skip on their own with ``importorskip``."""

import importlib.util

_FRAMEWORKS = {"basicsr": "basicsr", "mmengine": "mmengine", "torchmetrics": "torchmetrics", "lightning": "lightning"}

collect_ignore = [f"stftblur/integrations/{module}.py" for module, package in _FRAMEWORKS.items()
                  if importlib.util.find_spec(package) is None]
