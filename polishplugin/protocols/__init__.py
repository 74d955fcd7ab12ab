"""The plugin's Scipion protocols (one module per job type, thin: convert -> run program -> outputs).

To register a protocol: add ONE explicit import line below for the class in its
``protocol_<step>.py`` (no try/except: an import error must show, not hide the protocol) and add the
class name to ``__all__``.  ``protocols.conf`` already lists all seven classes; Scipion's
tree skips names that are not importable yet.
"""

from ._base import ProtPolishBase
from .protocol_import import ProtPolishImport
from .protocol_polish import ProtPolishParticles
from .protocol_polish_train import ProtPolishTrain
from .protocol_mask_create import ProtPolishMaskCreate
from .protocol_postprocess import ProtPolishPostprocess
from .protocol_local_resolution import ProtPolishLocalRes
from .protocol_refine3d import ProtPolishRefine3D

__all__ = ["ProtPolishRefine3D", "ProtPolishLocalRes", "ProtPolishTrain", "ProtPolishMaskCreate",
           "ProtPolishPostprocess", "ProtPolishBase", "ProtPolishImport", "ProtPolishParticles"]
