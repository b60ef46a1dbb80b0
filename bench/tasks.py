"""The bench's retrieval tasks: the eval set each one scores, what its queries and its corpus are, its title."""

from __future__ import annotations

#: task -> the eval set (:mod:`edgeret.data.catalog`) its rows are scored on
TASK_SETS = {"t2i": "openmoji-test-t2i", "i2t": "openmoji-test-i2t", "t2t": "wordnet-test-t2t"}
#: task -> what its queries are (the latency that counts for it); other tasks: text
QUERY_KIND = {"t2i": "text", "i2t": "image", "t2t": "text", "i2i": "image"}
#: task -> what its corpus holds (index build is timed on each task's test corpus)
CORPUS_KIND = {"t2i": "image", "i2t": "text", "t2t": "text"}
#: task -> the title of its panel in the Pareto plot
TASK_TITLES = {"t2i": "text -> image (OpenMoji)", "i2t": "image -> text (OpenMoji)", "t2t": "text -> text (WordNet)"}
