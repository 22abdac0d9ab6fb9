"""benchmarks/lm_assets.py's pure parts on literal snippets in the corpus's own format (no network)."""

import pytest

from benchmarks import lm_assets

# Two paragraphs (runs of non-blank lines, tab-indented sentences) of NLTK's tagged Brown, with this copy's quirks:
# a repeated final `;/.`, an abbreviation before the final period, `` '' quotes, parentheses, lone ' quotes.
TAGGED = (
    "\n\n\tThe/at Fulton/np-tl County/nn-tl said/vbd ``/`` no/at evidence/nn ''/'' ,/, which/wdt won/vbd ./.\n"
    "\tIt/pps was/bedz won/vbn by/in Ivan/np Allen/np Jr./np ./.\n"
    "\n\n\tThey/ppss voted/vbd (/( 2/cd )/) on/in 1-1/2/cd acres/nns ;/. ;/.\n"
    "\tMore/ap '/' pro/nn '/' letters/nns ?/. ?/.\n"
)


def test_words_drop_the_tag_after_the_last_slash():
    assert lm_assets.words("The/at Fulton/np-tl 1-1/2/cd Atlanta's/np$ ,/,") == [
        "The", "Fulton", "1-1/2", "Atlanta's", ","]


def test_document_is_one_detokenised_paragraph_per_line():
    assert lm_assets.document(TAGGED) == (
        'The Fulton County said "no evidence", which won. It was won by Ivan Allen Jr.\n'
        "They voted (2) on 1-1/2 acres; More 'pro' letters?\n")


def test_detokenize_glues_punctuation_and_quotes_to_their_words():
    assert lm_assets.detokenize(["He", "said", "``", "go", "(", "now", ")", "!", "''", "and", "left", "."]) == (
        'He said "go (now)!" and left.')


def test_genres_map_file_ids_and_refuse_a_malformed_line():
    assert lm_assets.genres("ca01 news\ncn05 adventure\n\n") == {"ca01": "news", "cn05": "adventure"}
    with pytest.raises(ValueError, match="line 2"):
        lm_assets.genres("ca01 news\ncn05 science fiction\n")


def test_verified_refuses_other_bytes(tmp_path):
    path = tmp_path / "x.tgz"
    path.write_bytes(b"abc")
    digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256 of b"abc"
    assert lm_assets.verified(path, digest) == path
    with pytest.raises(ValueError, match="x.tgz: sha256 ba7816bf"):
        lm_assets.verified(path, "0" * 64)
