"""Data sources: readers from files on disk to one `RawData` shape, chosen by `data.source`.

    idx           a folder with the four MNIST-style IDX files (the default, Fashion-MNIST)
    image_folder  root/<class>/<image> or root/{train,test}/<class>/<image>, PNG or JPEG
    arrays        a .npz file, or a folder of .npy files (x/y, optional x_test/y_test)
    table         a Parquet or CSV file, or a folder of them (data.label_column names the labels)
    text          labelled texts: a CSV, Parquet or JSON Lines file (or a folder of them), or root/<class>/*.txt;
                  tokenised by the data stage (steps/sources/tokens.py) into token ids and attention masks

Each module's docstring gives its exact rules. `SOURCES` is the one registry of them, names only: the
config schema reads its valid `data.source` values from it, and a reader is imported when `read` is
asked for it, so importing this package (or `steps.sources.base`, for `DataError`) runs no reader and
the data stage's code key holds the one reader `data.source` names.

`READS` is the one list of the source-specific `data.*` keys (`OPTIONS`) each source reads. It lives
here, beside the names, rather than in each reader, because the config refuses the others before any
work (steps/config/data.py) and must not import a reader (Pillow, pandas) to know them; each reader's
`refuse_options` reads the same list.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from steps.compression.choices import Registry

if TYPE_CHECKING:
    from steps.sources.base import RawData, SourceOptions

SOURCES = Registry("data source", {
    "idx": "steps.sources.idx:read",
    "image_folder": "steps.sources.image_folder:read",
    "arrays": "steps.sources.arrays:read",
    "table": "steps.sources.table:read",
    "text": "steps.sources.text:read",
})
"""name -> reader, a function (path, SourceOptions) -> RawData."""

ENCODERS = Registry("sample encoder", {
    "text": "steps.sources.tokens:encode",
})
"""RawData kind -> what turns its split samples into arrays (texts into token ids); a kind not here (images,
features) is written as it is. Keyed by kind, not by source; the text reader imports steps.sources.tokens
itself, so the data stage's code key holds it exactly when data.source is text."""

TASKS = Registry("data task", {
    "causal_lm": "steps.sources.blocks:prepare",
})
"""data.task -> what reads, splits and encodes its data, when it is not `classify` (the default: labelled samples
read by `data.source`'s reader). causal_lm: documents of the text source, split by document, tokenised and packed
into blocks of data.block_size tokens (steps/sources/blocks.py); names only, as SOURCES."""
CLASSIFY = "classify"
"""data.task's default: labelled samples, a reader in SOURCES, an encoder in ENCODERS."""
UNLABELLED = ("label_column", "class_names", "max_length")
"""The text source's options a task of TASKS refuses: documents have no labels, and block_size replaces max_length
(the config and steps/sources/documents.py refuse them by key)."""

TOKENIZERS = Registry("tokenizer kind", {
    "wordpiece": "steps.sources.tokens:wordpiece",
    "bpe": "steps.sources.tokens:bpe",
})
"""data.tokenizer.train.kind -> a function (vocab_size, texts) -> a trained `tokenizers.Tokenizer`
(steps/sources/tokens.py)."""

OPTIONS = {
    "image_size": "resizes every image to a square of this size",
    "channels": "converts every image to grayscale or rgb",
    "label_column": "names the table column that holds the labels",
    "feature_columns": "names the table columns used as features, all other columns when null",
    "class_names": "names labels 0..K-1 that the data gives as bare integers",
    "text_column": "names the table column that holds the texts",
    "max_length": "truncates and pads every text to this many tokens",
    "tokenizer": "loads a saved tokenizer ({path: DIR}) or trains one on the training split "
                 "({train: {kind, vocab_size}})",
}
"""The data.* keys only some sources read, and what each does (test_fraction and seed apply to every source)."""

READS = {
    "idx": ("image_size", "channels", "class_names"),
    "image_folder": ("image_size", "channels"),  # its classes are named after their folders
    "arrays": ("image_size", "channels", "class_names"),  # image_size and channels: arrays of images only
    "table": ("label_column", "feature_columns"),  # its labels are named by their values
    # label_column, text_column and class_names: a table of texts; class folders of .txt files name their classes
    "text": ("label_column", "text_column", "class_names", "max_length", "tokenizer"),
}
"""source -> the OPTIONS it reads; any other OPTIONS key set for it is refused, naming the key."""

__all__ = ["CLASSIFY", "ENCODERS", "OPTIONS", "READS", "SOURCES", "TASKS", "TOKENIZERS", "UNLABELLED", "option_help",
           "read", "refusal"]


def option_help(key: str) -> str:
    """What data.`key` (one of OPTIONS) does and which sources read it."""
    readers = [name for name, keys in READS.items() if key in keys]
    if len(readers) == 1:
        return f"{OPTIONS[key]}; only the {readers[0]} source reads it"
    return f"{OPTIONS[key]}; the {', '.join(readers[:-1])} and {readers[-1]} sources read it"


def refusal(source: str, key: str) -> str:
    """Why data.`key` is refused with `source`: the key, the source, what the key is for, the way out."""
    return (f"the {source} source does not use {key} ({key} {option_help(key)}); "
            f"remove data.{key} from params.yaml or set it to null (-S data.{key}=null)")


def read(name: str, path: Path | str, options: SourceOptions | None = None) -> RawData:
    """Read `path` with the source called `name`; options default to SourceOptions()."""
    from steps.sources.base import DataError, SourceOptions

    reader = SOURCES.resolve(name)
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: does not exist (data.path for the {name} source)")
    return reader(path, options if options is not None else SourceOptions())
