"""Build-time package layout (the metadata is in pyproject.toml).

``layers/`` stays at the top of the checkout (where users edit it) and is mapped
into the wheel as the data package ``gis.layers``; the vendored Leaflet files of
``gis/assets/`` are package data. :data:`gis.settings.LAYERS_DIR` finds the
catalogues in the checkout first, else in the installed package.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["gis", "gis.*"]), "gis.layers", "gis.boundaries"],
    package_dir={"gis.layers": "layers", "gis.boundaries": "data/boundaries"},
    package_data={"gis": ["assets/*", "assets/**/*"], "gis.layers": ["*.yaml"],
                  "gis.boundaries": ["*.geojson", "*.csv", "*.md"]},
    include_package_data=False,
)
