"""Package discovery for the card's layout (everything else is in pyproject.toml).

The library lives in ``edgedistill/`` and the card keeps four more top-level folders (``cli/``,
``calibration/``, ``recipes/``, ``targets/``) that install as ``edgedistill.<folder>``. setuptools'
``packages.find`` cannot follow a ``package-dir`` mapping, and a hand-written list once forgot
``edgedistill.vocab`` (the installed command crashed), so every package, mapped ones included, is found
here by walking the folders.
"""

from setuptools import find_packages, setup

MAPPED = ("cli", "calibration", "recipes", "targets")


def _packages() -> tuple[list[str], dict[str, str]]:
    packages = ["edgedistill", *(f"edgedistill.{name}" for name in find_packages("edgedistill"))]
    package_dir = {"edgedistill": "edgedistill"}
    for folder in MAPPED:
        packages.append(f"edgedistill.{folder}")
        package_dir[f"edgedistill.{folder}"] = folder
        packages += [f"edgedistill.{folder}.{name}" for name in find_packages(folder)]
    return packages, package_dir


packages, package_dir = _packages()
setup(packages=packages, package_dir=package_dir)
