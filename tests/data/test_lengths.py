import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon.data import ArrayDataset, SimpleDataset

from bucketrnn.data.datasets import FlatSequences
from bucketrnn.data.lengths import is_pair_lengths, sequence_lengths


def test_list_of_token_lists_and_numpy_arrays():
    assert sequence_lengths([[1, 2, 3], [4], (5, 6)]).tolist() == [3, 1, 2]
    assert sequence_lengths([np.arange(4), np.arange(2)]).tolist() == [4, 2]
    assert sequence_lengths(np.zeros((3, 7), dtype=np.int32)).tolist() == [7, 7, 7]


def test_flat_tokens_plus_offsets_needs_no_python_object_per_sequence():
    ds = FlatSequences(np.arange(10, dtype=np.int32), np.array([0, 3, 3 + 5, 10]))
    lengths = sequence_lengths(ds)
    assert lengths.dtype == np.int64 and lengths.tolist() == [3, 5, 2]


def test_feature_sequences_and_labelled_tuples():
    feats = [np.zeros((5, 3), np.float32), np.zeros((2, 3), np.float32)]
    assert sequence_lengths(feats).tolist() == [5, 2]
    assert sequence_lengths([(f, 1) for f in feats]).tolist() == [5, 2]
    ds = ArrayDataset([np.arange(3), np.arange(6)], [0, 1])
    assert sequence_lengths(ds).tolist() == [3, 6]
    assert sequence_lengths(SimpleDataset([(mx.nd.zeros((4,)), 2)])).tolist() == [4]


def test_src_tgt_pairs_give_pairs_of_lengths():
    lengths = sequence_lengths([([1, 2], [3, 4, 5]), ([1], [2])])
    assert is_pair_lengths(lengths)
    assert lengths.tolist() == [[2, 3], [1, 1]]


def test_bad_input_messages():
    with pytest.raises(ValueError, match="the dataset is empty"):
        sequence_lengths([])
    with pytest.raises(ValueError, match=r"example 1 is an empty sequence"):
        sequence_lengths([[1], [], [2]])
    with pytest.raises(TypeError, match=r"dataset\[0\] is a string"):
        sequence_lengths(["a sentence"])
    with pytest.raises(TypeError, match=r"dataset\[1\] has no length"):
        sequence_lengths([[1], 7])
    with pytest.raises(TypeError, match=r"dataset\[1\] is not a \(src, tgt\) pair"):
        sequence_lengths([([1], [2]), [3]])


class _Lengths:
    def __init__(self, lengths, n):
        self._lengths, self._n = lengths, n

    def lengths(self):
        return self._lengths

    def __len__(self):
        return self._n


@pytest.mark.parametrize("lengths, n, error, match", [
    ([2.7, 3.0], 2, TypeError, r"_Lengths.lengths\(\) must return integers, got dtype float64"),
    ([float("nan"), 3.0], 2, TypeError, "must return integers"),
    ([True, False], 2, TypeError, "must return integers, got dtype bool"),
    ([3, 4, 5], 2, ValueError, r"returned 3 lengths for 2 examples; it must return one per"),
    ([[1, 2, 3]], 1, ValueError, r"must return shape \(N,\) or \(N, 2\).*got shape \(1, 3\)"),
])
def test_a_datasets_own_lengths_method_is_checked(lengths, n, error, match):
    with pytest.raises(error, match=match):
        sequence_lengths(_Lengths(lengths, n))
    assert sequence_lengths(_Lengths([3, 4], 2)).tolist() == [3, 4]
