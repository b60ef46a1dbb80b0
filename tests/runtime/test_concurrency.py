"""Many searching threads while another thread adds, deletes and saves: no errors, nothing lost."""

import threading

import numpy as np

from edgeret.runtime.index import VectorIndex
from edgeret.runtime.retriever import Retriever

from .conftest import random_unit

WORDS = "red green blue apple car dog cat sun moon tree house fish bird".split()


def test_searches_run_while_a_writer_adds_deletes_and_saves(bundle):
    r = Retriever.open(bundle, threads=1)
    r.index = VectorIndex(32, capacity=16, exact_threshold=50, ef_construction=50)  # resizes while searching
    vectors = random_unit(400, 32, seed=21)
    r.add_embeddings([f"v{i}" for i in range(100)], vectors[:100], [{"batch": -1}] * 100)
    live = {f"v{i}" for i in range(100)}
    errors: list[BaseException] = []
    searches = [0] * 4
    done = threading.Event()

    def searcher(slot: int) -> None:
        rng = np.random.default_rng(slot)
        try:
            while not done.is_set():
                exact = (True, None, False, False)[slot]
                if slot % 2:
                    hits = r.search(text=" ".join(rng.choice(WORDS, 3)), k=10, exact=exact)
                else:
                    where = {"batch": {"gte": int(rng.integers(0, 10))}} if slot == 2 else None
                    query = random_unit(1, 32, seed=int(rng.integers(1 << 30)))[0]
                    hits = r.search(vector=query, k=10, filter=where, exact=exact)
                scores = [h.score for h in hits]
                assert scores == sorted(scores, reverse=True) and all(isinstance(h.id, str) for h in hits)
                searches[slot] += 1
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    def writer() -> None:
        try:
            for batch in range(30):
                ids = [f"v{100 + batch * 10 + i}" for i in range(10)]
                r.add_embeddings(ids, vectors[100 + batch * 10 : 110 + batch * 10], [{"batch": batch}] * 10)
                live.update(ids)
                if batch % 3 == 0:
                    text_ids = [f"t{batch}-{i}" for i in range(4)]
                    r.add_texts(text_ids, [f"{WORDS[batch % 13]} {WORDS[i]}" for i in range(4)])
                    live.update(text_ids)
                if batch % 5 == 4:
                    gone = [f"v{batch * 10 + i}" for i in range(3)]
                    r.delete(gone)
                    live.difference_update(gone)
                if batch % 10 == 9:
                    r.save()
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    threads = [threading.Thread(target=searcher, args=(slot,)) for slot in range(4)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    assert all(searches), searches
    assert set(r.index.ids()) == live and len(r) == len(live)
    for i in range(400):
        item = f"v{i}"
        if item in live:
            assert r.search(vector=vectors[i], k=1, exact=True)[0].id == item
            assert item in {h.id for h in r.search(vector=vectors[i], k=10, exact=False)}
    reopened = Retriever.open(bundle, threads=1)
    assert set(reopened.index.ids()) == live
