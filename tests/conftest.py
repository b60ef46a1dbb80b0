import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache_dir(tmp_path_factory):
    """Keep fitted artefacts written by tests out of the user's ~/.cache."""
    old = os.environ.get("EDGERET_CACHE_DIR")
    os.environ["EDGERET_CACHE_DIR"] = str(tmp_path_factory.mktemp("edgeret-cache"))
    yield
    if old is None:
        os.environ.pop("EDGERET_CACHE_DIR", None)
    else:
        os.environ["EDGERET_CACHE_DIR"] = old
