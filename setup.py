"""The packages of the r1forge wheel; everything else is in pyproject.toml.

`services` and its sub-packages, plus the repository's top-level configs/ and data/ folders, which the
wheel carries inside the package as services/configs/ and services/data/ (a package-dir mapping, so the
checkout keeps its layout; their files are pyproject.toml's package-data). services/paths.py finds them in
either layout. This file exists because the mapped folders must be listed as packages, sub-folders
included, and pyproject.toml can either find packages or list them, not both.
"""

from setuptools import find_namespace_packages, find_packages, setup

SHIPPED = {"services.configs": "configs", "services.data": "data"}

packages = find_packages(include=["services", "services.*"])
for name, folder in SHIPPED.items():
    packages += [name, *(f"{name}.{sub}" for sub in find_namespace_packages(folder))]

setup(packages=packages, package_dir=SHIPPED)
