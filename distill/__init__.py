"""edgeret.distill: teachers, the teacher cache and (later) student distillation.

Needs the ``distill`` extra: ``pip install 'edgeret[distill]'``.
"""

from edgeret.runtime.extras import require_extra

require_extra("distill", ["torch", "transformers", "safetensors"])
