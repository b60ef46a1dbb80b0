"""Reference data for the browser runtime (web/): the Python runtime's answers on a bundle (``python -m tools.web``)."""
