"""Build-time package layout (the metadata is in pyproject.toml).

``layers/`` stays at the top of the checkout (where users edit it) and is mapped
into the wheel as the data package ``gis.layers``; the vendored Leaflet files of
``gis/assets/`` are package data. :data:`gis.settings.LAYERS_DIR` finds the
catalogues in the checkout first, else in the installed package.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["gis", "gis.*"]), "gis.layers"],
    package_dir={"gis.layers": "layers"},
    package_data={"gis": ["assets/*", "assets/**/*"], "gis.layers": ["*.yaml"]},
    include_package_data=False,
)
