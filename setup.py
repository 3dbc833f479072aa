"""One build step that pyproject.toml cannot declare: the shipped models go into the wheel.

pyproject.toml holds the whole configuration. This file only extends ``build_py``: the trained
models of ``models/`` (whose home is the repository root) are copied into the built package as
``stftblur/_shipped/<name>/``, where :func:`stftblur.models.models_dir` finds them once the
wheel is installed. An editable install (``pip install -e .``) copies nothing and reads
``models/`` of the checkout in place. MANIFEST.in puts ``models/`` into the sdist, so a wheel
built from the sdist carries them too.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

from setuptools import setup
from setuptools.command.build_py import build_py

MODELS = Path("models")  # relative to the project root, where every PEP 517 build runs
SHIPPED = ("stftblur", "_shipped")


class build_py_with_models(build_py):
    """``build_py`` plus every ``models/<name>/`` that holds ``model.safetensors`` (its files, not sub-folders)."""

    def _shipped_files(self) -> List[Path]:
        if not MODELS.is_dir():
            return []
        return [
            f
            for d in sorted(MODELS.iterdir())
            if (d / "model.safetensors").is_file()
            for f in sorted(d.iterdir())
            if f.is_file() and not f.name.startswith(".")
        ]

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for f in self._shipped_files():
            target = Path(self.build_lib, *SHIPPED, f.parent.name, f.name)
            self.mkpath(str(target.parent))
            self.copy_file(str(f), str(target))

    def get_outputs(self, include_bytecode: bool = True) -> List[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs += [str(Path(self.build_lib, *SHIPPED, f.parent.name, f.name)) for f in self._shipped_files()]
        return outputs


setup(cmdclass={"build_py": build_py_with_models})
