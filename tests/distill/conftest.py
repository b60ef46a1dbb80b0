import pytest


@pytest.fixture(scope="session")
def standin(tmp_path_factory):
    """The real stand-in teacher with an image head fitted quickly on a few train emoji."""
    from edgeret.distill.teachers.standin import StandinTeacher

    path = tmp_path_factory.mktemp("standin") / "head.safetensors"
    return StandinTeacher(head_path=path, fit_options={"augment_copies": 1, "max_emoji": 40})
