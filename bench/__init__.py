"""edgeret.bench: the studies — accuracy against latency of every variant side by side (:mod:`.compare`), the
teacher's held-out quality (:mod:`.teacher_quality`), the runtime on its own (:mod:`.runtime_bench`) and
hnswlib at scale (:mod:`.ann_study`).

Each study is a typed function (``run_bench``, ``run_teacher_quality``, ``run_runtime_bench``,
``run_ann_study``) that writes its results files and returns their content; the ``edgeret`` commands in
:mod:`edgeret.cli` are their argparse adapters. The datasets and metrics they use live in :mod:`edgeret.data`;
plotting and the peer and teacher rows need the ``bench`` extra.
"""
