"""edgeret.compress: pruning, ONNX export, quantisation and bundles.

Needs the ``compress`` extra: ``pip install 'edgeret[compress]'``.
"""

from edgeret.runtime.extras import require_extra

require_extra("compress", ["onnx", "torch"])
