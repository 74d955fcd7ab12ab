"""Public constants shared by protocols, viewers and tests: program name, output file names.

Output file *names* that viewers need live here (or in ``programs/<prog>.py``), never as protocol
private methods (STYLE S2.4).
"""

#: The one console script every protocol runs (``polishplugin <command> ...``).
PROGRAM = "polishplugin"

#: Environment variable that points tests at the real RELION tutorial files (``../shared/data``).
TEST_DATA_VAR = "POLISHPLUGIN_TEST_DATA"

#: Label of the protocol-tree section that holds every protocol of this plugin.
TREE_SECTION = "Polishing stage"

# Files written by ProtPolishImport under its extra/ folder (RELION names).
IMPORT_PARTICLES_STAR = "particles.star"
IMPORT_MICROGRAPHS_STAR = "corrected_micrographs.star"
IMPORT_POSTPROCESS_STAR = "postprocess.star"

# Names of the per-particle half-set attribute Scipion objects carry (RELION rlnRandomSubset).
RANDOM_SUBSET_ATTR = "_rlnRandomSubset"
