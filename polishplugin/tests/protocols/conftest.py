"""Set up the headless Scipion environment before any protocol test imports pyworkflow."""

from polishplugin.stage.scipion_env import setup_scipion_env

setup_scipion_env()
