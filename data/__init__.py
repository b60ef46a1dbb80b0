"""edgeret.data: the datasets, corpora and evaluation code that distill, compress and bench share (torch-free).

Built-in data: the OpenMoji image-caption pairs and the WordNet gloss -> lemma subset; named evaluation
sets (:mod:`.catalog`); retrieval metrics (:mod:`.metrics`) and scoring of any encoder (:mod:`.scoring`);
results files (:mod:`.results`).
"""
