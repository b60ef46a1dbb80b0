"""The bench's retrieval tasks: the eval set each one scores, what its queries and its corpus are, its title.

The clean held-out test splits (``t2i``, ``i2t``, ``t2t``) and the style-shift set of the same test emoji
(:mod:`edgeret.data.style_shift`: ``t2i-style``, ``i2t-style``, and ``i2i``, where a styled render finds the
clean render of its emoji). A variant is judged on both.
"""

from __future__ import annotations

#: task -> the eval set (:mod:`edgeret.data.catalog`) its rows are scored on
TASK_SETS = {"t2i": "openmoji-test-t2i", "i2t": "openmoji-test-i2t", "t2t": "wordnet-test-t2t",
             "t2i-style": "openmoji-style-test-t2i", "i2t-style": "openmoji-style-test-i2t",
             "i2i": "openmoji-style-test-i2i"}
#: the clean test-split tasks (the fresh-process index builds are timed on their corpora)
CLEAN_TASKS = ("t2i", "i2t", "t2t")
#: the style-shift tasks
STYLE_TASKS = ("t2i-style", "i2t-style", "i2i")
#: task -> what its queries are (the latency that counts for it); other tasks: text
QUERY_KIND = {"t2i": "text", "i2t": "image", "t2t": "text", "t2i-style": "text", "i2t-style": "image",
              "i2i": "image"}
#: task -> what its corpus holds (index build is timed on each clean task's test corpus)
CORPUS_KIND = {"t2i": "image", "i2t": "text", "t2t": "text", "t2i-style": "image", "i2t-style": "text",
               "i2i": "image"}
#: task -> the title of its panel in the Pareto plot
TASK_TITLES = {"t2i": "text -> image (OpenMoji)", "i2t": "image -> text (OpenMoji)", "t2t": "text -> text (WordNet)",
               "t2i-style": "text -> image, style shift", "i2t-style": "image -> text, style shift",
               "i2i": "image -> image, style shift -> clean"}
#: tasks whose queries need the image tower / the text tower
NEEDS = {"t2i": ("text", "image"), "i2t": ("text", "image"), "t2t": ("text",), "t2i-style": ("text", "image"),
         "i2t-style": ("text", "image"), "i2i": ("image",)}
