"""Rating files: the three formats load; every bad input is one clear DataError naming file and line."""

import numpy as np
import pytest

from trainables.recsys import protocol, ratings
from trainables.recsys.ratings import DataError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_tsv_remaps_ids_and_sorts_by_user_then_time(tmp_path):
    path = write(tmp_path, "r.tsv", "u9 i5 4 2\nu9 i7 5 1\nu2 i5 3 7\n\nu2\ti1\t1\t3\n")
    data = ratings.load(path)
    assert (data.n_users, data.n_items) == (2, 3)
    assert data.users.tolist() == [0, 0, 1, 1]  # indices follow the sorted ids: u2, then u9
    assert data.timesteps.tolist() == [3, 7, 1, 2]
    assert data.ratings.tolist() == [1, 3, 5, 4]
    assert data.items.tolist() == [0, 1, 2, 1]  # i1, i5, i7, i5: one index for i5, in id order
    assert data.user_ids.tolist() == ["u2", "u9"]


def test_goodreads_drops_unrated_and_keeps_file_order(tmp_path):
    text = "user_id,book_id,is_read,rating,is_reviewed\na,10,1,5,0\na,11,0,0,0\nb,10,1,2,1\na,12,1,3,0\n"
    data = ratings.load(write(tmp_path, "goodreads_interactions.csv", text))
    assert data.ratings.tolist() == [5, 3, 2]  # user a in file order, then b; the 0 is gone
    assert data.n_items == 2 + 1 - 1  # books 10 and 12 (11 was unrated)


def test_movielens_half_stars_and_timestamps(tmp_path):
    text = "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,0.5,1260759100\n2,31,4.0,5\n"
    data = ratings.load(write(tmp_path, "ratings.csv", text))
    assert data.ratings.tolist() == [0.5, 2.5, 4.0]  # sorted by time within user; half stars kept
    assert "movielens" in data.source


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.tsv", "", "the file is empty"),
        ("blank.tsv", "\n\n", "the file is empty"),
        ("bad.tsv", "u1 i1 4 1\nu1 i2 four 2\n", r"line 2, column 'rating': expected a number, got 'four'"),
        ("short.tsv", "u1 i1 4 1\nu1 i2 5\n", r"line 2: column 'timestep' is missing"),
        ("long.tsv", "u1 i1 4 1\nu1 i2 5 2 9\n", r"line 2: expected 4 columns, found 5"),
        ("range.tsv", "u1 i1 4 1\nu1 i2 7 2\n", r"line 2, column 'rating': rating 7 is outside \[0.5, 5\]"),
        ("ml.csv", "userId,movieId,rating\n1,2,3\n", "missing column 'timestamp'"),
        ("ml2.csv", "userId,movieId,rating,timestamp\n1,2,9,4\n", r"line 2, column 'rating': rating 9"),
        ("gr.csv", "user_id,book_id,is_read,rating,is_reviewed\n", "header but no interactions"),
        ("gr0.csv", "user_id,book_id,is_read,rating,is_reviewed\na,1,0,0,0\n", "no rated interactions"),
        ("odd.csv", "who,what\n1,2\n", "unrecognized header"),
    ],
)
def test_bad_files_get_one_clear_line(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(DataError, match=message) as err:
        ratings.load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        # pandas' default turned the extra leading field into the index: user 2, rating 4, time 5.
        ("wide.tsv", "1\t2\t3\t4\t5\n6\t7\t8\t9\t10\n", r"line 1: 5 fields, expected 4 \(user_id item_id rating"),
        ("wide.dat", "\n1::2::3::4::5\n", r"line 2: 5 fields, expected 4 \(user_id::item_id::rating::timestep"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,2,3,4,5\n", r"line 2: 5 fields, expected 4 \(one field"),
        ("narrow.tsv", "1 2 3\n4 5 6\n", r"line 1: 3 fields, expected 4"),
    ],
)
def test_rows_of_the_wrong_width_are_one_line_not_shifted_columns(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(DataError, match=message) as err:
        ratings.load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        ratings.load(tmp_path / "nope.tsv")


def test_synthetic_is_cached_deterministic_and_has_ground_truth(tmp_path):
    spec = ratings.SyntheticSpec(n_users=50, n_items=200, min_len=10, max_len=20, seed=3)
    first = ratings.synthetic(spec, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("synthetic-*.npz"))) == 1
    again = ratings.synthetic(spec, cache_dir=tmp_path)
    assert np.array_equal(first.items, again.items) and np.array_equal(first.truth.tastes, again.truth.tastes)
    assert first.truth.tastes.shape == (50, 21, 8)  # the taste before each of up to 20 steps, and after
    assert first.truth.expected(np.arange(50), np.zeros(50, dtype=int), np.full(50, -1)).shape == (50, 200)
    assert first.ratings.min() >= 1 and first.ratings.max() <= 5
    lengths = first.lengths()
    assert lengths.min() >= 10 and lengths.max() <= 20
    # Popularity skew: the most exposed item is chosen far more often than the median one.
    counts = np.bincount(first.items, minlength=200)
    assert counts.max() > 3 * np.median(counts)


def test_default_synthetic_histories_have_movielens_100k_lengths():
    """Heavy-tailed like MovieLens-100K's (median 65, mean 106, longest 737, 90th percentile 244):
    a uniform or a normal length would have a 90th percentile well under 3 x the median."""
    lengths = ratings.history_lengths(ratings.SyntheticSpec(), np.random.default_rng(0))
    assert len(lengths) == 943 and lengths.min() >= 20 and lengths.max() == 737
    assert np.median(lengths) == 65 and abs(lengths.mean() - 106) < 1
    assert np.percentile(lengths, 90) > 3 * np.median(lengths)


def test_small_catalogues_cap_synthetic_histories_and_bad_lengths_are_one_line():
    spec = protocol.synthetic_spec(protocol.DataConfig(synthetic_users=300, synthetic_items=80))
    lengths = ratings.history_lengths(spec, np.random.default_rng(0))
    assert lengths.min() >= 20 and lengths.max() == 40  # no item is consumed twice: at most half the catalogue
    with pytest.raises(DataError, match="min_len < median_len < mean_len"):
        ratings.SyntheticSpec(median_len=120)
    with pytest.raises(DataError, match="max_len <= n_items"):
        ratings.SyntheticSpec(n_items=500)


def test_variants():
    data = ratings.synthetic(ratings.SyntheticSpec(n_users=40, n_items=40, min_len=10, max_len=12))
    assert set(np.unique(ratings.extreme(data).ratings)) <= {1.0, 5.0}
    sub = ratings.subsample_users(data, 0.8, seed=0)
    assert sub.n_users == 32 and sub.truth.tastes.shape[0] == sub.truth.user_bias.shape[0] == 32
    assert np.bincount(sub.users).min() >= 10  # remapped contiguously, whole histories kept
    with pytest.raises(DataError, match="user_fraction"):
        ratings.subsample_users(data, 1.5, seed=0)
