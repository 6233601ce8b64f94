"""Every example runs at a tiny size (subprocess, as a user would run it)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = {
    "ptb_lm.py": (["--limit", "150", "--eval-limit", "40", "--hidden", "16", "--layers", "1",
                   "--epochs", "1", "--buckets", "3"],
                  ["valid perplexity", "test perplexity", "graphs compiled"]),
    "classify_sentences.py": (["--limit", "200", "--eval-limit", "60", "--epochs", "1",
                               "--hidden", "16"], ["majority baseline", "valid accuracy"]),
    "tag_sentences.py": (["--limit", "200", "--epochs", "1", "--hidden", "16"],
                         ["majority baseline", "valid token accuracy", "tagged: "]),
    "keras_char_lstm.py": (["--limit", "60", "--epochs", "1", "--hidden", "16",
                            "--generate", "10", "--buckets", "3"],
                           ["keras-mxnet way", "bucketrnn:", "chars/s", "sample (bucketed)"]),
    "translate_pairs.py": (["--pairs", "300", "--test-pairs", "30", "--epochs", "1",
                            "--hidden", "16", "--buckets", "3"],
                           ["real target tokens/s", "greedy   exact match", "beam 4   exact match",
                            "decoding graphs:", "sample:"]),
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_example_runs_tiny(script, tmp_path):
    args, expected = CASES[script]
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for text in expected:
        assert text in done.stdout, (text, done.stdout[-2000:])
