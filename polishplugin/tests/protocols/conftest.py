"""Set up the headless Scipion environment before any protocol test imports pyworkflow."""

from polishplugin.tests.protocols.scipion_env import setup_scipion_env

setup_scipion_env()
