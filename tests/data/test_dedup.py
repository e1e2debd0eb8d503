from distill_ner.data.dedup import dedup, normalize_text
from distill_ner.data.example import Example


def ex(text):
    return Example(text=text)


def test_exact_and_near_duplicates_keep_the_first():
    items = [
        ex("The Amur leopard lives in temperate forests."),
        ex("the amur leopard lives in temperate forests!"),  # exact after normalisation
        ex("The Amur leopard lives in temperate forest."),  # near
        ex("The axolotl eats worms in Lake Xochimilco."),
    ]
    kept, removed = dedup(items, threshold=0.9)
    assert [e.text for e in kept] == [items[0].text, items[3].text]
    assert [why.split()[0] for _, why in removed] == ["exact_duplicate", "near_duplicate"]
    assert all(items[0].id in why for _, why in removed)
    kept, removed = dedup(items, threshold=1.0)
    assert len(kept) == 3 and len(removed) == 1
    assert normalize_text("  Hello,   WORLD ") == "hello world"


def test_dedup_over_more_than_one_block_is_greedy_in_order():
    import random

    rng = random.Random(0)
    words = "leopard axolotl forest river reef swamp krill bamboo eggs nests cubs dens pools ants seeds".split()
    items = [ex(" ".join(rng.choice(words) for _ in range(12)) + f" {i}") for i in range(600)]
    items.append(ex(items[550].text + "s"))
    kept, removed = dedup(items, threshold=0.95)
    assert len(removed) == 1 and removed[0][0] is items[-1]
