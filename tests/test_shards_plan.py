"""plan.py's numpy orders against the tuple sorts they replaced (kept here verbatim as the reference), keys
forced to collide so that every tie-break is exercised."""

from __future__ import annotations

import numpy as np
import pytest
from stablecpt.curation.shards import plan
from stablecpt.curation.shards.plan import Part, draw, epoch_order, hash_order


def reference_hash_order(rows, ids, seed, purpose, epoch):
    keyed = sorted((plan.sample_key(seed, purpose, epoch, ids[r]), ids[r], int(r)) for r in rows)
    return np.fromiter((r for _, _, r in keyed), dtype=np.int64, count=len(keyed))


def reference_epoch_order(parts, ids, seed, epoch):
    keyed = []
    for part in parts:
        for row, repeat in zip(part.rows.tolist(), part.repeat.tolist(), strict=True):
            keyed.append((plan.sample_key(seed, "order", epoch, f"{ids[row]}#{repeat}"), ids[row], repeat, row,
                          part.name))
    keyed.sort()
    return [(row, name) for _, _, _, row, name in keyed]


@pytest.fixture(params=["real keys", "colliding keys"])
def keys(request, monkeypatch):
    if request.param == "colliding keys":  # 4 distinct values, 2 of them above 2**63 (the uint64 order matters)
        real = plan.sample_key
        monkeypatch.setattr(plan, "sample_key", lambda *a: [3, 2**63 + 5, 7, 2**64 - 1][real(*a) % 4])
    return request.param


def test_hash_order_matches_the_tuple_sort(keys):
    ids = sorted(f"src/{i:04d}" for i in np.random.default_rng(1).permutation(300))
    rows = np.random.default_rng(2).choice(300, size=200, replace=False)
    for seed, purpose, epoch in [(0, "domain", 0), (7, "general:web", 3)]:
        got = hash_order(rows, [ids[r] for r in rows], seed, purpose, epoch)
        assert got.tolist() == reference_hash_order(rows, ids, seed, purpose, epoch).tolist()
    if keys == "colliding keys":  # the forced ties do occur and are broken by id
        assert len(set(got.tolist())) == 200 and got.tolist() != sorted(got.tolist())


def test_epoch_order_matches_the_tuple_sort_with_repeats_and_shared_rows(keys):
    ids = [f"d/{i:03d}" for i in range(120)]
    lengths = np.random.default_rng(3).integers(1, 20, size=120)

    def take_prefix(order, target):
        cumulative = np.cumsum(lengths[order])
        if not len(order) or cumulative[-1] < target:
            return order, int(cumulative[-1]) if len(order) else 0, True
        k = int(np.searchsorted(cumulative, target))
        return order[:k + 1], int(cumulative[k]), False

    domain = draw("domain", np.arange(0, 60), 3 * int(lengths[:60].sum()) + 17, take_prefix, 4, "test")
    # a row in two parts with the same repeat has the same key: part names break those ties, also for real keys
    web = draw("web", np.arange(0, 30)[::-1], 200, take_prefix, 4, "test")
    code = draw("code", np.arange(40, 70), 100, take_prefix, 4, "test")
    assert set(web.rows.tolist()) & set(domain.rows.tolist()) and set(code.rows.tolist()) & set(domain.rows.tolist())
    assert domain.repeats == 4 and set(domain.repeat.tolist()) == {0, 1, 2, 3}
    parts = [domain, web, code]
    rows, part = epoch_order(parts, lambda r: [ids[i] for i in r.tolist()], 5, 2)
    expected = reference_epoch_order(parts, ids, 5, 2)
    assert list(zip(rows.tolist(), [parts[i].name for i in part.tolist()], strict=True)) == expected


def test_draw_repeats_the_whole_pool_then_a_prefix():
    def take_prefix(order, target):
        k = -(-target // 5)
        return (order, 5 * len(order), True) if k > len(order) else (order[:k], 5 * k, False)

    part = draw("domain", np.arange(10)[::-1], 120, take_prefix, 3, "test")
    assert part.rows.tolist() == [*range(9, -1, -1)] * 2 + [9, 8, 7, 6]
    assert part.repeat.tolist() == [0] * 10 + [1] * 10 + [2] * 4
    assert (part.tokens, part.repeats, part.pool_tokens) == (120, 3, 50)
    assert Part(name="x", target=0).summary()["documents"] == 0


def test_rows_in_sorted_finds_each_id_and_names_one_it_lacks():
    import polars as pl
    from stablecpt.curation.shards.run import rows_in_sorted

    ids = pl.Series(sorted(["web/b", "med/é", "med/a", "med/10", "med/9", "z"]))
    assert rows_in_sorted(ids, ["z", "med/a", "med/é", "med/10"]).tolist() == [5, 2, 3, 0]
    assert rows_in_sorted(ids, []).tolist() == []
    for missing in ["med/b", "zz", "a", "med/1"]:  # between, after, before, a prefix of a present id
        with pytest.raises(KeyError, match=missing):
            rows_in_sorted(ids, ["z", missing])
    with pytest.raises(KeyError, match="x"):
        rows_in_sorted(pl.Series([], dtype=pl.String), ["x"])
