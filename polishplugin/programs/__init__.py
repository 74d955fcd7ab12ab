"""Command-line programs (``polishplugin <command>``), RELION-compatible, runnable without Scipion.

Each module ``programs/<name>.py`` has a module docstring (its ``--help``), ``add_args(parser)`` and
``main(args) -> int``.  ``COMMANDS`` maps the sub-command to its module.
"""

COMMANDS = {
    "simulate": "polishplugin.programs.simulate",
    "motion_refine": "polishplugin.programs.motion_refine",
    "motion_train": "polishplugin.programs.motion_train",
    "refine3d": "polishplugin.programs.refine3d",
    "postprocess": "polishplugin.programs.postprocess",
    "mask_create": "polishplugin.programs.mask_create",
    "local_resolution": "polishplugin.programs.local_resolution",
    "demo": "polishplugin.stage.demo",
}
