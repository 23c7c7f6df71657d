"""The real QR photo corpus ships with the repository, whole; a missing one is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators.qr_corpus import CORPUS, PHOTOS, CorpusMissing, load_corpus


def test_the_corpus_is_in_the_repository_whole_with_its_licence() -> None:
    items = load_corpus()
    assert len(items) == PHOTOS
    assert all(path.is_relative_to(CORPUS) and text for path, text, _gray in items)
    assert all(gray.ndim == 2 and gray.size > 0 for _path, _text, gray in items)
    assert "Apache License" in (CORPUS / "LICENSE").read_text(encoding="utf-8")
    assert "zxing-cpp" in (CORPUS / "README.md").read_text(encoding="utf-8")


def test_a_missing_or_partial_corpus_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    with pytest.raises(CorpusMissing, match="holds 0 photos"):
        load_corpus(tmp_path / "nowhere")
    folder = tmp_path / "qrcode-1"
    folder.mkdir()
    (folder / "1.txt").write_text("text")
    with pytest.raises(CorpusMissing, match="no photo"):
        load_corpus(tmp_path)
