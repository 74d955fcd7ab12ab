"""Every file format the plugin reads or writes, one reader and one writer each, without Scipion.

``labels`` names every STAR label; ``star`` and ``mrc`` are the two container formats; the other
modules own one kind of file each (particles, movies and their frames, MTF tables, the output files
RELION writes: postprocess.star, bfactors.star, tracks, opt_params, model/sampling/optimiser STAR).
Programs, protocols (through ``convert``), viewers and the stage read and write only through here.
"""
