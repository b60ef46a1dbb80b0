"""The whole runtime path (open, embed, index, search, save, CLI) never imports torch."""

import os
import subprocess
import sys

from .conftest import CHILD_CWD

CODE = r"""
import sys

attempts = []

class _NoTorch:  # records (and refuses) any attempt, even one a library would swallow
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            attempts.append(name)
            raise ImportError("the runtime must not import torch")

sys.meta_path.insert(0, _NoTorch())
import numpy as np
from PIL import Image
from edgeret.runtime.retriever import Retriever
from edgeret.cli.main import main

r = Retriever.open(sys.argv[1], threads=1)
r.add_texts(["a", "b"], ["red apple", "blue car"], metadata=[{"k": 1}, {"k": 2}])
r.add_images(["c"], [np.zeros((20, 20, 3), dtype=np.uint8)])
assert r.search(text="red apple", k=2)[0].id == "a"
assert r.search(image=Image.new("RGB", (8, 8)), k=1, filter={"k": {"gte": 0}})
r.save()
main(["search", sys.argv[1], "blue car", "--json"])
imported = any(m == "torch" or m.startswith("torch.") for m in sys.modules)
print("TORCH" if imported or attempts else "NO-TORCH")
"""


def test_runtime_search_never_imports_torch(bundle):
    env = dict(os.environ)  # the child imports the installed edgeret
    out = subprocess.run([sys.executable, "-c", CODE, str(bundle)], capture_output=True, text=True, env=env,
                         cwd=CHILD_CWD)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("NO-TORCH")


def test_the_install_has_one_import_name(tmp_path):
    """Outside the checkout, the distribution installs ``edgeret`` and none of the folders' own names."""
    probe = ("import importlib.util as u, edgeret; "
             "print([n for n in ('runtime', 'data', 'distill', 'compress', 'bench') if u.find_spec(n)]); "
             "print(edgeret.__version__)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "[]" and out[1]
