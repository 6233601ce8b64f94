import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon.data import ArrayDataset, SimpleDataset

from bucketrnn.datasets import FlatSequences
from bucketrnn.lengths import is_pair_lengths, sequence_lengths


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
    with pytest.raises(ValueError, match="dataset is empty"):
        sequence_lengths([])
    with pytest.raises(ValueError, match=r"dataset\[1\] is an empty sequence"):
        sequence_lengths([[1], [], [2]])
    with pytest.raises(TypeError, match=r"dataset\[0\] is a string"):
        sequence_lengths(["a sentence"])
    with pytest.raises(TypeError, match=r"dataset\[1\] has no length"):
        sequence_lengths([[1], 7])
    with pytest.raises(TypeError, match=r"dataset\[1\] is not a \(src, tgt\) pair"):
        sequence_lengths([([1], [2]), [3]])
