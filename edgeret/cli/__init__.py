"""The ``edgeret`` command: one thin argparse adapter per subcommand (``edgeret X`` is ``edgeret.cli.X``).

Each adapter parses its arguments, calls its stage's function and prints the result; the dispatcher in
:mod:`edgeret.cli.main` imports an adapter only when its command runs, so the base install runs
``edgeret --help``, ``edgeret index`` and ``edgeret search`` without torch.
"""
