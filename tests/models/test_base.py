import pytest

from bucketrnn import BucketLoader
from bucketrnn.models import loss_normalizer

# (src, tgt) pairs whose target lengths differ from their source lengths.
PAIRS = [([1, 2, 3], [4, 5]), ([1, 2], [3, 4, 5, 6]), ([1], [2]), ([1, 2, 3, 4], [5, 6, 7]),
         ([5, 6], [7, 8, 9, 1, 2])]
TARGET_TOKENS = 2 + 4 + 1 + 3 + 5
SOURCE_TOKENS = 3 + 2 + 1 + 4 + 2


def test_loss_normalizer_counts_target_tokens_of_real_rows_on_pairs():
    loader = BucketLoader(PAIRS, batch_size=2, num_buckets=1, task="seq2seq")
    batches = list(loader)
    assert sum(b.num_real for b in batches) == len(PAIRS)
    assert any(b.num_real < b.batch_size for b in batches)  # a fill row is not counted
    for b in batches:
        real = [i for i in b.indices.tolist() if i >= 0]
        assert loss_normalizer(b) == sum(len(PAIRS[i][1]) for i in real)
        assert loss_normalizer(b, per="row") == len(real)
    total = sum(loss_normalizer(b) for b in batches)
    assert total == TARGET_TOKENS != SOURCE_TOKENS
