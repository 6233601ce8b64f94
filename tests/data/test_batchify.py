import pickle

import mxnet as mx
import numpy as np
import pytest
from conftest import make_flat

from bucketrnn.data.batchify import Batch, PadToBucket, SlotDataset, to_ndarray


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
    batch = PadToBucket((6,), pad_val=99)(items(SEQS, [1, 0, -2, -1]))
    data = batch.data.asnumpy()
    np.testing.assert_array_equal(data[2], data[0])  # -2 copies example 1
    np.testing.assert_array_equal(data[3], [5, 6, 7, 99, 99, 99])
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
    assert nd.indices is batch.indices and nd.meta == batch.meta
    assert batch.meta == {"bucket": 0, "rows": 1, "tokens": 2, "slots": 8}  # fill row left out


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


# ---------------------------------------------------------------- pad_val must fit the dtype
@pytest.mark.parametrize("pad_val", [1.5, 2**40, -1, float("nan"), float("inf")])
def test_pad_val_that_does_not_fit_token_ids_is_refused_at_construction(pad_val):
    with pytest.raises(ValueError, match=rf"pad_val={pad_val!r} does not fit int32 token ids: "
                                         r"it must be a whole number in \[0, 2147483647\]"):
        PadToBucket((4,), task="lm", pad_val=pad_val)


@pytest.mark.parametrize("pad_val", [1.5, -1, 2**40])
def test_pad_val_is_checked_at_the_first_batch_when_the_dtype_is_not_known(pad_val):
    pad = PadToBucket((4,), pad_val=pad_val)  # token ids or features: not known yet
    with pytest.raises(ValueError, match=rf"pad_val={pad_val!r} does not fit int32 token ids"):
        pad(items(SEQS, [0, 3]))
    with pytest.raises(ValueError, match=rf"pad_val={pad_val!r} does not fit int32 token ids"):
        pad(items(make_flat(SEQS), [0, 3]))
    features = [np.ones((3, 2)), np.ones((2, 2))]
    np.testing.assert_array_equal(pad(items(features, [1])).data.asnumpy()[0, 2:],
                                  np.full((2, 2), float(pad_val), np.float32))


@pytest.mark.parametrize("pad_val, error, match", [
    (float("nan"), ValueError, r"pad_val=nan does not fit the data \(int32 ids or float32"),
    (1e39, ValueError, r"pad_val=1e\+39 does not fit"),
    (True, TypeError, r"pad_val must be a number, got pad_val=True"),
    ("0", TypeError, r"pad_val must be a number, got pad_val='0'"),
])
def test_pad_val_that_fits_no_dtype_is_refused_at_construction(pad_val, error, match):
    with pytest.raises(error, match=match):
        PadToBucket((4,), pad_val=pad_val)


# ---------------------------------------------------------------- id and label ranges
def test_token_ids_beyond_vocab_size_name_the_dataset_index():
    ds = [[5, 6, 7], [1, 2, 3, 4, 10], [9], [3, 4]]
    pad = PadToBucket((8,), vocab_size=10)
    with pytest.raises(ValueError, match=r"example 1 has token id 10, outside \[0, 10\) for "
                                         r"vocab_size=10: encode the data with the model's"):
        pad(items(ds, [0, 1, 3]))
    pad(items(ds, [0, 3]))  # the others pass
    lm = PadToBucket((4,), task="lm", vocab_size=10)  # the last token is only a target
    with pytest.raises(ValueError, match=r"example 1 has token id 10"):
        lm(items(make_flat(ds), [3, 1]))


def test_negative_token_ids_name_the_dataset_index():
    ds = [[5, 6, 7], [1, -3, 2]]
    with pytest.raises(ValueError, match=r"example 1 has token id -3"):
        PadToBucket((4,), vocab_size=10)(items(ds, [0, 1]))


def test_target_ids_of_pairs_are_checked_against_the_target_vocabulary():
    ds = [([1, 2], [7, 8, 9]), ([3], [6])]
    pad = PadToBucket(((3, 4),), task="seq2seq", vocab_size=(4, 9))
    with pytest.raises(ValueError, match=r"example 0 has target token id 9, outside \[0, 9\) "
                                         r"for target vocab_size=9"):
        pad(items(ds, [1, 0]))
    with pytest.raises(ValueError, match=r"example 0 has target token id 9, outside \[0, 9\) for "
                                         r"vocab_size=9"):
        PadToBucket(((3, 4),), task="seq2seq", vocab_size=9)(items(ds, [1, 0]))


@pytest.mark.parametrize("label, match", [
    (3, r"example 2 has label 3, outside \[0, 3\) for num_classes=3: labels must be class"),
    (-1, r"example 2 has label -1, outside \[0, 3\)"),
    (1.5, r"example 2 has label 1\.5; num_classes=3 needs whole-number class labels"),
    (float("nan"), r"example 2 has label nan"),
])
def test_labels_outside_the_classes_name_the_dataset_index(label, match):
    ds = [([1, 2], 0), ([4], 2), ([5, 6], label)]
    pad = PadToBucket((3,), task="classify", num_classes=3)
    with pytest.raises(ValueError, match=match):
        pad(items(ds, [0, 2, 1]))


def test_whole_float_labels_become_int_class_ids():
    ds = [([1, 2], 0.0), ([4], 2.0)]
    batch = PadToBucket((3,), task="classify", num_classes=3)(items(ds, [0, 1]))
    assert batch.label.dtype == np.int32 and batch.label.asnumpy().tolist() == [0, 2]


@pytest.mark.parametrize("kwargs, match", [
    (dict(vocab_size=0), r"vocab_size must be an integer >= 1, got vocab_size=0"),
    (dict(vocab_size=(3, 4)), r"a \(source, target\) pair for task='seq2seq' only"),
    (dict(num_classes=3), r"num_classes is for task='classify' labels"),
    (dict(vocab_size=5, pad_val=5), r"pad_val=5 is not a token id of vocab_size=5"),
])
def test_bad_id_limits_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PadToBucket((4,), **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(vocab_size=2.5), r"vocab_size must be None or an int, got vocab_size=2\.5"),
    (dict(num_classes=True), r"num_classes must be None or an int, got num_classes=True"),
])
def test_id_limits_that_are_not_integers_are_a_type_error(kwargs, match):
    with pytest.raises(TypeError, match=match):
        PadToBucket((4,), task="classify", **kwargs)


def test_vocab_size_on_float_features_is_refused():
    with pytest.raises(ValueError, match=r"vocab_size=5 checks token ids, but examples \[0\] are "
                                         r"float features"):
        PadToBucket((4,), vocab_size=5)(items([np.ones((3, 2))], [0]))
