"""Packaging: one import namespace. The stage folders the layout shows at the top (curation/, training/,
evaluation/, audit/) install as stablecpt.curation, stablecpt.training, ...; nothing else goes on the path.
Everything else about the package is in pyproject.toml."""

from setuptools import find_packages, setup

STAGES = ("curation", "training", "evaluation", "audit")

packages = ["stablecpt", *(f"stablecpt.{p}" for p in find_packages("stablecpt"))]
package_dir = {"stablecpt": "stablecpt"}
for stage in STAGES:
    packages += [f"stablecpt.{stage}", *(f"stablecpt.{stage}.{p}" for p in find_packages(stage))]
    package_dir[f"stablecpt.{stage}"] = stage

setup(packages=packages, package_dir=package_dir)
