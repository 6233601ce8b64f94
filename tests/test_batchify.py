import pickle

import mxnet as mx
import numpy as np
import pytest
from conftest import make_flat

from bucketrnn.batchify import Batch, PadToBucket, SlotDataset, to_ndarray


def items(dataset, slots, buckets=None):
    """What a DataLoader hands the batchify function for ``slots``."""
    ids = np.zeros(len(dataset), dtype=np.int64) if buckets is None else np.asarray(buckets)
    view = SlotDataset(dataset, ids)
    return [view[s] for s in slots]


SEQS = [[5, 6, 7], [1, 2, 3, 4, 5], [9], [3, 4]]


def test_pads_to_bucket_length_not_batch_max():
    batch = PadToBucket((8,), pad_val=0)(items(SEQS, [0, 3]))
    assert isinstance(batch, Batch) and batch.bucket_key == 8
    data = batch.data.asnumpy()
    assert data.shape == (2, 8) and data.dtype == np.int32
    assert data.tolist() == [[5, 6, 7, 0, 0, 0, 0, 0], [3, 4, 0, 0, 0, 0, 0, 0]]
    assert batch.valid_length.asnumpy().tolist() == [3, 2]
    assert batch.label is None and batch.label_length is None
    assert batch.weight.dtype == np.float32


def test_fill_rows_copy_a_real_row_and_weigh_zero():
    batch = PadToBucket((6,), pad_val=-1)(items(SEQS, [1, 0, -2, -1]))
    data = batch.data.asnumpy()
    np.testing.assert_array_equal(data[2], data[0])  # -2 copies example 1
    np.testing.assert_array_equal(data[3], [5, 6, 7, -1, -1, -1])
    assert batch.weight.asnumpy().tolist() == [1, 1, 0, 0]
    assert batch.indices.tolist() == [1, 0, -1, -1] and batch.indices.dtype == np.int64
    assert batch.valid_length.asnumpy().min() >= 1
    assert batch.num_real == 2 and batch.batch_size == 4


def test_language_model_targets_are_shifted_and_masked():
    batch = PadToBucket((4,), task="lm", pad_val=0)(items(SEQS, [1, 3, -4]))
    assert batch.data.asnumpy().tolist() == [[1, 2, 3, 4], [3, 0, 0, 0], [3, 0, 0, 0]]
    assert batch.label.asnumpy().tolist() == [[2, 3, 4, 5], [4, 0, 0, 0], [4, 0, 0, 0]]
    assert batch.valid_length.asnumpy().tolist() == [4, 1, 1]
    assert batch.label.dtype == np.int32


def test_classification_labels():
    ds = [([1, 2], 3), ([4], 0), ([5, 6, 7], 1)]
    batch = PadToBucket((3,), task="classify")(items(ds, [0, 2, 1]))
    assert batch.label.asnumpy().tolist() == [3, 1, 0]
    assert batch.data.asnumpy().tolist() == [[1, 2, 0], [5, 6, 7], [4, 0, 0]]


def test_sequence_pairs_pad_targets_to_the_target_key():
    ds = [([1, 2], [7, 8, 9]), ([3], [6])]
    batch = PadToBucket(((3, 4),), task="seq2seq")(items(ds, [0, 1, -1]))
    assert batch.bucket_key == (3, 4)
    assert batch.data.asnumpy().tolist() == [[1, 2, 0], [3, 0, 0], [1, 2, 0]]
    assert batch.label.asnumpy().tolist() == [[7, 8, 9, 0], [6, 0, 0, 0], [7, 8, 9, 0]]
    assert batch.label_length.asnumpy().tolist() == [3, 1, 3]
    assert batch.valid_length.asnumpy().tolist() == [2, 1, 2]


def test_float_features():
    ds = [np.ones((2, 3)), np.full((4, 3), 2.0)]
    batch = PadToBucket((5,))(items(ds, [0, 1]))
    data = batch.data.asnumpy()
    assert data.shape == (2, 5, 3) and data.dtype == np.float32
    assert data[0, :2].tolist() == [[1] * 3] * 2 and not data[0, 2:].any()
    assert batch.valid_length.asnumpy().tolist() == [2, 4]


@pytest.mark.parametrize("task", [None, "lm", "classify"])
def test_flat_sequences_gather_equals_list_path(task):
    seqs = [np.arange(n) + 1 for n in (4, 2, 7, 5)]
    labels = [0, 1, 0, 1] if task == "classify" else None
    flat = make_flat(seqs, labels)
    listed = [(s, y) for s, y in zip(seqs, labels)] if labels else seqs
    pad = PadToBucket((7,), task=task, output="numpy")
    a, b = pad(items(flat, [2, 0, 3, -2])), pad(items(listed, [2, 0, 3, -2]))
    assert isinstance(items(flat, [0])[0][2], type(SlotDataset(flat, np.zeros(4))._flat))
    for name in ("data", "valid_length", "label", "weight", "indices"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or (x.dtype == y.dtype and (x == y).all()), name


def test_truncate_cuts_long_rows_and_otherwise_raises():
    pad = PadToBucket((3,), truncate=True)
    assert pad(items(SEQS, [1])).data.asnumpy().tolist() == [[1, 2, 3]]
    assert pad(items(make_flat(SEQS), [1])).valid_length.asnumpy().tolist() == [3]
    with pytest.raises(ValueError, match=r"example 1 has length 5, longer than its bucket "
                                         r"takes \(3\).*on_overflow='truncate'"):
        PadToBucket((3,))(items(SEQS, [0, 1]))


def test_numpy_output_converts_to_ndarray_without_copy():
    batch = PadToBucket((4,), task="lm", output="numpy")(items(SEQS, [0, -1]))
    assert isinstance(batch.data, np.ndarray) and batch.data.dtype == np.int32
    nd = to_ndarray(batch)
    assert isinstance(nd.data, mx.nd.NDArray) and nd.data.context == mx.cpu()
    assert not batch.data.flags.writeable  # MXNet took the numpy buffer over: no copy
    assert to_ndarray(batch, mx.cpu(1)).data.context == mx.cpu(1)
    assert nd.data.asnumpy().tolist() == batch.data.tolist()
    assert nd.label.asnumpy().tolist() == batch.label.tolist() and nd.label_length is None
    assert nd.indices is batch.indices and nd.meta == batch.meta == {"bucket": 0}


def test_pickles_small_and_equal():
    pad = PadToBucket((4, 8), task="lm", pad_val=0, truncate=True)
    blob = pickle.dumps(pad)
    assert len(blob) < 400  # goes to a worker with every batch
    clone = pickle.loads(blob)
    a, b = pad(items(SEQS, [1, 3])), clone(items(SEQS, [1, 3]))
    assert (a.data.asnumpy() == b.data.asnumpy()).all()
    view = pickle.loads(pickle.dumps(SlotDataset(make_flat(SEQS), np.zeros(4))))
    assert view[-2][2].tokens.tolist() == [5, 6, 7, 1, 2, 3, 4, 5, 9, 3, 4]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("dataset, slots, error, match", [
    ([[1, 2], [3, 1.5, 2]], [0, 1], TypeError, r"example 1 has non-integer token id 1\.5"),
    ([[1, 2], np.array([1.0, np.nan])], [0, 1], TypeError,
     r"example 1 has non-integer token id nan"),
    ([[1, 2], ["a", "b"]], [0, 1], TypeError, r"example 1 has token ids of dtype <U1"),
    ([[1, 2], [[3, 4]]], [0, 1], TypeError, r"example 1 has token ids of dtype int64 and shape"),
    ([[1, 2], [], [3]], [0, 1, 2], ValueError, r"example 1 is an empty sequence"),
    ([[1, 2], [3, -4]], [1, 0], ValueError, r"example 1 has token id -4"),
    ([np.ones((2, 3)), np.array([[1, 2, np.nan]])], [0, 1], ValueError,
     r"example 1 has NaN in its features at step 0"),
    ([np.ones((2, 3)), np.ones((2, 4)), np.ones((1, 4))], [1, 0, 2], ValueError,
     r"example 0 has feature shape \(2, 3\), expected \(T, 4\): ragged feature dims"),
    ([np.ones((2, 3)), np.ones((2,)), np.ones((1, 3))], [2, 0, 1], ValueError,
     r"example 1 has feature shape \(2,\), expected \(T, 3\): ragged feature dims"),
])
def test_bad_examples_are_named(dataset, slots, error, match):
    with pytest.raises(error, match=match):
        PadToBucket((4,))(items(dataset, slots))


def test_lm_needs_two_tokens():
    with pytest.raises(ValueError, match=r"example 2 has fewer than 2 tokens; task='lm'"):
        PadToBucket((4,), task="lm")(items(SEQS, [0, 2]))


def test_negative_flat_token_is_named():
    with pytest.raises(ValueError, match=r"example 2 has token id -7"):
        PadToBucket((4,))(items(make_flat([[1, 2], [3], [4, -7]]), [0, 2]))


def test_empty_flat_sequence_is_named():
    with pytest.raises(ValueError, match=r"example 1 is an empty sequence"):
        PadToBucket((4,))(items(make_flat([[1, 2], [], [3]]), [0, 1]))


def test_mixed_buckets_are_refused():
    with pytest.raises(ValueError, match=r"a batch mixes buckets \[0, 1\]"):
        PadToBucket((4, 8))(items(SEQS, [0, 1], buckets=[0, 1, 0, 0]))


def test_classify_needs_pairs_and_scalar_labels():
    with pytest.raises(TypeError, match=r"task='classify' expects \(data, label\) examples; "
                                        r"example 0 is list"):
        PadToBucket((4,), task="classify")(items(SEQS, [0]))
    with pytest.raises(TypeError, match=r"example 0 has a label of shape \(2,\); "
                                        r"task='classify' expects scalar labels"):
        PadToBucket((4,), task="classify")(items([([1], [1, 2]), ([2], 3)], [1, 0]))
    with pytest.raises(TypeError, match=r"expects numeric labels, got dtype <U1"):
        PadToBucket((4,), task="classify")(items([([1], "a"), ([2], "b")], [1, 0]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(keys=(4,), task="mlm"), r"task must be one of .*got task='mlm'"),
    (dict(keys=(4,), output="torch"), r"output must be 'ndarray' or 'numpy'"),
    (dict(keys=()), r"keys must name at least one bucket"),
    (dict(keys=(4,), task="seq2seq"), r"task='seq2seq' needs \(src, tgt\) bucket keys"),
    (dict(keys=((3, 4),), task="lm"), r"task='lm' needs int bucket keys"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PadToBucket(**kwargs)


def test_slot_dataset_checks_bucket_ids():
    with pytest.raises(ValueError, match=r"bucket_ids has 2 entries for a dataset of 4"):
        SlotDataset(SEQS, np.zeros(2))


def test_whole_float_and_ndarray_token_ids_are_accepted():
    ds = [np.array([1.0, 2.0]), mx.nd.array([3, 4, 5]), [6]]
    batch = PadToBucket((3,))(items(ds, [0, 1, 2]))
    assert batch.data.asnumpy().tolist() == [[1, 2, 0], [3, 4, 5], [6, 0, 0]]
    assert batch.data.dtype == np.int32


def test_dropped_examples_and_empty_batches_are_refused():
    with pytest.raises(ValueError, match=r"bucket -1 is not one of the 2 buckets"):
        PadToBucket((4, 8))(items(SEQS, [0], buckets=[-1, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"cannot batchify an empty list"):
        PadToBucket((4,))([])
