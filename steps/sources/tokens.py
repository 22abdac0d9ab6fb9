"""Texts to token ids and attention masks, with a Hugging Face `tokenizers` tokenizer (the text source's encoder).

The tokenizer is either loaded (`data.tokenizer: {path: P}`: a folder written by a fast tokenizer's
`save_pretrained`, which holds tokenizer.json, or a tokenizer.json itself) or trained here on the
training split only (`data.tokenizer: {train: {kind, vocab_size}}`), so validation and test texts never
shape the vocabulary:

    wordpiece  BERT's recipe: lower-cased, accents stripped, split on whitespace and punctuation,
               [CLS] text [SEP]; special tokens [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4
    bpe        RoBERTa's recipe: byte-level (any text, case kept, no unknown tokens), <s> text </s>;
               special tokens <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4

A trained vocabulary always holds the whole alphabet (single characters, or all 256 bytes for bpe), so
it may come out larger than vocab_size on tiny data, or smaller when the texts hold fewer words.

Every text is truncated on the right to `data.max_length` tokens (special tokens included) and padded to
it with the pad token: each split is int32 `input_ids` (N, max_length) and uint8 `attention_mask`
(N, max_length), 1 on real tokens. How many texts of each split lost tokens is counted, logged and
recorded. The test split also keeps its texts as written (`text_utf8` + `text_offsets`, pack_texts): the
served model takes raw texts, and promote and the audit score it on them. The tokenizer's tokenizer.json
is written beside the splits as the bytes it was loaded from (or, trained, as serialised without
truncation or padding, which the manifest records instead), with its sha256, vocabulary size and
special tokens in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from steps.sources import TOKENIZERS
from steps.sources.base import DataError, Encoded, SourceOptions, Split, TokenizerOptions

FILE = "tokenizer.json"
"""The tokenizer's file, in a save_pretrained folder and beside the processed splits."""
DEFAULT_TEXT_COLUMN = "text"
"""The text column of class folders' texts (they have no table). steps/serving/contract.py holds the same value:
serving is shipped alone, without this package."""
ROLES = {
    "pad": ("[PAD]", "<pad>"),
    "cls": ("[CLS]", "<s>"),
    "sep": ("[SEP]", "</s>"),
    "unk": ("[UNK]", "<unk>"),
    "mask": ("[MASK]", "<mask>"),
}
"""Special-token roles the manifest records, and the tokens that play them when no config file names them."""
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")
"""Where a save_pretrained folder names its special tokens (`pad_token`: "[PAD]" or {"content": "[PAD]"})."""

RAW_SPLIT = "test"
RAW_TEXT_KEYS = ("text_utf8", "text_offsets")
"""The test split also keeps its raw texts (pack_texts): what a caller sends the served model, which promote and
the audit score it on, so the served tokenisation is checked against the evaluated token ids."""

logger = logging.getLogger(__name__)


def wordpiece(vocab_size: int, texts: list[str]) -> Tokenizer:
    """A BERT-style WordPiece tokenizer trained on `texts`.

    The trainer names its "##"-prefixed pieces in hash-map order, so on ties it picks different merges from one
    run to the next (huggingface/tokenizers#1794, fix proposed in #2066). Naming every "##c" up front, in sorted
    order, as a special token makes training deterministic; they are then dropped from the added tokens (which
    would match "##c" in raw text) and stay in the vocabulary as the ordinary pieces they are."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    words = (word for text in texts
             for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(text)))
    pieces = sorted({f"##{c}" for word in words for c in word[1:]})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=specials + pieces, show_progress=False))
    serialised = json.loads(tokenizer.to_str())
    serialised["added_tokens"] = [t for t in serialised["added_tokens"] if t["content"] in specials]
    tokenizer = Tokenizer.from_str(json.dumps(serialised))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tokenizer


def bpe(vocab_size: int, texts: list[str]) -> Tokenizer:
    """A RoBERTa-style byte-level BPE tokenizer trained on `texts` (deterministic: it has no "##" pieces)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>")), add_prefix_space=False)
    return tokenizer


def train(options: TokenizerOptions, texts: list[str]) -> tuple[Tokenizer, bytes]:
    """A tokenizer of `options.kind` trained on `texts`, and its tokenizer.json."""
    tokenizer = TOKENIZERS.resolve(options.kind)(options.vocab_size, texts)
    return tokenizer, tokenizer.to_str().encode("utf-8")


def tokenizer_file(path: Path) -> Path:
    """The tokenizer.json that `path` (data.tokenizer.path) names: the file itself or the one in its folder."""
    if path.is_dir():
        if not (path / FILE).is_file():
            raise DataError(
                f"{path}: not a tokenizer folder (no {FILE}); data.tokenizer.path must be a folder written by a "
                f"fast tokenizer's save_pretrained, which holds {FILE}, or a {FILE} file")
        return path / FILE
    if not path.is_file():
        raise DataError(f"{path}: does not exist (data.tokenizer.path)")
    return path


def load(path: Path) -> tuple[Tokenizer, bytes]:
    """The tokenizer that `path` names, and its tokenizer.json's bytes as they are on disk."""
    file = tokenizer_file(path)
    raw = file.read_bytes()
    try:
        return Tokenizer.from_str(raw.decode("utf-8")), raw
    except UnicodeDecodeError as err:
        raise DataError(f"{file}: not UTF-8 at byte {err.start}; not a tokenizer.json") from None
    except Exception as err:  # noqa: BLE001  the Rust side raises plain Exception for a malformed file
        raise DataError(f"{file}: not a tokenizers tokenizer.json ({err})") from None


def configured(folder: Path, roles: tuple[str, ...] = tuple(ROLES)) -> dict[str, str]:
    """{role: token} that a save_pretrained folder's config files name for `roles` (`<role>_token`;
    tokenizer_config.json wins)."""
    named: dict[str, str] = {}
    for name in reversed(CONFIG_FILES):
        path = folder / name
        if not path.is_file():
            continue
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"{path}: not readable JSON ({err})") from None
        for role in roles:
            value = config.get(f"{role}_token") if isinstance(config, dict) else None
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str):
                named[role] = value
    return named


def special_tokens(tokenizer: Tokenizer, where: Path | None) -> dict[str, dict]:
    """{role: {"token", "id"}} for the roles of ROLES the tokenizer has: as the config files of its folder `where`
    (when it came from one) name them, else its padding token (pad), else the usual BERT or RoBERTa token if the
    vocabulary holds it."""
    named = configured(where) if where is not None and where.is_dir() else {}
    if "pad" not in named and tokenizer.padding:
        named["pad"] = tokenizer.padding["pad_token"]
    found = {}
    for role, usual in ROLES.items():
        if role in named:
            token = named[role]
            if tokenizer.token_to_id(token) is None:
                raise DataError(f"{where}: its {role}_token {token!r} is not in the vocabulary of {FILE}")
            found[role] = {"token": token, "id": tokenizer.token_to_id(token)}
            continue
        for token in usual:
            if tokenizer.token_to_id(token) is not None:
                found[role] = {"token": token, "id": tokenizer.token_to_id(token)}
                break
    return found


def encode_texts(tokenizer: Tokenizer, texts: np.ndarray, max_length: int, pad: dict) -> tuple[Split, int]:
    """((input_ids int32, attention_mask uint8), both (N, max_length)) and how many texts were truncated."""
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(length=max_length, pad_id=pad["id"], pad_token=pad["token"])
    encodings = tokenizer.encode_batch(texts.tolist())
    ids = np.array([e.ids for e in encodings], dtype=np.int32).reshape(len(texts), max_length)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.uint8).reshape(len(texts), max_length)
    return (ids, mask), sum(1 for e in encodings if e.overflowing)


def pack_texts(texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Texts as their UTF-8 bytes end to end (uint8) and where each starts and ends (int64, N + 1): no pickle, and
    none of the padding a fixed-width string array spends on the longest text."""
    encoded = [str(text).encode("utf-8") for text in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets


def unpack_texts(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    raw = data.tobytes()
    return [raw[start:end].decode("utf-8") for start, end in zip(offsets[:-1], offsets[1:], strict=True)]


def tokenizer_for(options: TokenizerOptions, train_texts: np.ndarray) -> tuple[Tokenizer, bytes, dict, dict | None]:
    """(tokenizer, its tokenizer.json, its special tokens, how it was trained or None when loaded)."""
    if options.path is not None:
        tokenizer, raw = load(Path(options.path))
        return tokenizer, raw, special_tokens(tokenizer, Path(options.path)), None
    tokenizer, raw = train(options, train_texts.tolist())
    return tokenizer, raw, special_tokens(tokenizer, None), {"kind": options.kind, "vocab_size": options.vocab_size}


def encode(splits: dict[str, Split], options: SourceOptions) -> Encoded:
    """Each split's texts as token ids and attention masks; the tokenizer is loaded, or trained on splits["train"]."""
    if options.tokenizer is None or options.max_length is None:
        raise ValueError("the text source needs data.tokenizer and data.max_length")
    tokenizer, raw, specials, trained = tokenizer_for(options.tokenizer, splits["train"][0])
    where = options.tokenizer.path or f"the tokenizer trained here ({options.tokenizer.kind})"
    if "pad" not in specials:
        raise DataError(f"{where}: has no padding token (none named pad_token, and no [PAD] or <pad>); "
                        "every text is padded to data.max_length")
    added = tokenizer.num_special_tokens_to_add(False)
    if options.max_length <= added:
        raise ValueError(f"data.max_length={options.max_length} leaves no room for text: {where} adds {added} "
                         "special tokens to every text")
    arrays, truncated = {}, {}
    for name, (texts, labels) in splits.items():
        (ids, mask), truncated[name] = encode_texts(tokenizer, texts, options.max_length, specials["pad"])
        arrays[name] = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if name == RAW_SPLIT:
            arrays[name].update(zip(RAW_TEXT_KEYS, pack_texts(texts), strict=True))
        if truncated[name]:
            logger.warning("text: %d of %d %s texts truncated to data.max_length=%d tokens",
                           truncated[name], len(texts), name, options.max_length)
    manifest = {
        "text_column": options.text_column or DEFAULT_TEXT_COLUMN,
        "max_length": options.max_length,
        "truncated": truncated,
        "tokenizer": {"file": FILE, "sha256": hashlib.sha256(raw).hexdigest(),
                      "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
                      "special_tokens": specials, "trained": trained},
    }
    return Encoded(arrays=arrays, input_shape=(options.max_length,), files={FILE: raw}, manifest=manifest)
