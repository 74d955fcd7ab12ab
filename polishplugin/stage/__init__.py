"""The whole stage: the workflow template filled and run as a Scipion project, the demo and its summary.

The top layer: it may import protocols, programs, io and plots; nothing imports it but tests.
"""
